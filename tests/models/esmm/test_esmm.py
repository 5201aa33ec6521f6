"""ESMM: network structure, metrics definitions, label-leakage guard, train/infer agreement and the
shipped synthetic sample end to end through tools/trainer.py and tools/infer.py."""
import json
import importlib
import os
import re

import numpy as np
import pandas as pd
import paddle
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import model_config, REPO, run_tool
from models.common.data.loader import create_loader
from models.common.loading import load_dygraph_model

CONFIG = os.path.join(REPO, "models", "multitask", "esmm", "config.yaml")
FOLDER = os.path.dirname(CONFIG)


def setup_model(tmp_path, *overrides):
    config = model_config(CONFIG, [f"runner.data_cache_dir={tmp_path / 'cache'}", *overrides])
    dm = load_dygraph_model(CONFIG)()
    dm.check_config(config)
    paddle.seed(0)
    return config, dm, dm.create_model(config)


def dataset(config, split):
    reader = importlib.import_module("models.common.datasets.aliccp")
    folder = config.get("runner.train_data_dir" if split == "train" else "runner.test_data_dir")
    return reader.RecDataset([os.path.join(folder, f) for f in sorted(os.listdir(folder)) if not f.startswith(".")],
                             config)


def test_pctcvr_is_pctr_times_pcvr_and_never_above_pctr(tmp_path):
    config, dm, model = setup_model(tmp_path)
    data = dataset(config, "test")
    batch = {k: paddle.to_tensor(v) for k, v in data.take(np.arange(200)).items()}
    out = {k: v.numpy() for k, v in model(batch).items()}
    assert out["ctr"].shape == out["cvr"].shape == out["ctcvr"].shape == (200, 1)
    assert np.allclose(out["ctcvr"], out["ctr"] * out["cvr"], atol=1e-7)
    assert (out["ctcvr"] <= out["ctr"] + 1e-7).all()


def test_losses_are_ctr_and_ctcvr_over_all_impressions(tmp_path):
    """CVR is never trained on clicked rows alone: the loss is logloss(pCTR, click) +
    logloss(pCTCVR, purchase) over every row of the batch."""
    config, dm, model = setup_model(tmp_path, "hyper_parameters.weight_ctcvr=0.5")
    data = dataset(config, "train")
    raw = data.take(np.arange(256))
    batch = {k: paddle.to_tensor(v) for k, v in raw.items()}
    metrics, _ = dm.create_metrics("train")
    loss, _, _ = dm.train_forward(model, metrics, batch, config)
    out = {k: v.numpy()[:, 0].astype(np.float64) for k, v in model(batch).items()}

    def bce(y, p):
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    expected = bce(raw["click"], out["ctr"]) + 0.5 * bce(raw["purchase"], out["ctcvr"])
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_label_leakage_guard(tmp_path):
    """No label (nor anything from one) reaches the network: the schema's features exclude
    click/purchase and changing the labels of a batch changes no prediction."""
    config, dm, model = setup_model(tmp_path)
    schema = importlib.import_module("models.common.datasets.aliccp").schema(config)
    features = [f.name for f in schema.features if f not in schema.labels]
    assert not {"click", "purchase"} & set(features) and len(features) == 23
    data = dataset(config, "test")
    raw = data.take(np.arange(300))
    out = model({k: paddle.to_tensor(v) for k, v in raw.items()})
    flipped = dict(raw, click=1 - raw["click"], purchase=1 - raw["purchase"])
    out2 = model({k: paddle.to_tensor(v) for k, v in flipped.items()})
    for name in out:
        assert np.array_equal(out[name].numpy(), out2[name].numpy())
    with pytest.raises(KeyError):  # a batch without the 23 fields cannot be scored from labels alone
        model({"click": paddle.to_tensor(raw["click"]), "purchase": paddle.to_tensor(raw["purchase"])})


def test_cvr_auc_is_on_clicked_impressions_and_every_auc_matches_sklearn(tmp_path):
    config, dm, model = setup_model(tmp_path)
    data = dataset(config, "test")
    metrics, names = dm.create_metrics("infer")
    assert names == ["auc_ctr", "logloss_ctr", "auc_ctcvr", "logloss_ctcvr", "auc_cvr"]
    preds, labels = {"ctr": [], "cvr": [], "ctcvr": []}, {"click": [], "purchase": []}
    with paddle.no_grad():
        for batch in create_loader(data, config, "infer"):
            metrics, outputs = dm.infer_forward(model, metrics, batch, config)
            for k in preds:
                preds[k].append(outputs[f"pred_{k}"].numpy()[:, 0])
            for k in labels:
                labels[k].append(np.asarray(outputs[k]).reshape(-1))
    p = {k: np.concatenate(v) for k, v in preds.items()}
    y = {k: np.concatenate(v) for k, v in labels.items()}
    values = dict(zip(names, [m.accumulate() for m in metrics]))
    clicked = y["click"] == 1
    assert values["auc_ctr"] == pytest.approx(roc_auc_score(y["click"], p["ctr"]), abs=1e-12)
    assert values["auc_ctcvr"] == pytest.approx(roc_auc_score(y["purchase"], p["ctcvr"]), abs=1e-12)
    assert values["auc_cvr"] == pytest.approx(roc_auc_score(y["purchase"][clicked], p["cvr"][clicked]), abs=1e-12)
    assert values["auc_cvr"] != pytest.approx(roc_auc_score(y["purchase"], p["cvr"]), abs=1e-6)


def test_train_and_infer_auc_agree_on_the_same_data(tmp_path):
    """The same rows, (practically) the same parameters: the training log's AUCs (running,
    histogram-based) equal infer's exact AUCs (PaddleRec's ESMM issue #934: fine in training,
    ~0.52 at infer)."""
    ckpt = tmp_path / "ckpt"
    common = [f"runner.model_save_path={ckpt}", f"runner.infer_load_path={ckpt}", "runner.epochs=1",
              "runner.infer_start_epoch=0", "runner.infer_end_epoch=1", "hyper_parameters.optimizer.learning_rate=1e-9",
              f"runner.data_cache_dir={tmp_path / 'cache'}"]
    train = run_tool("tools/trainer.py", "-m", CONFIG, "-o", *common)
    assert train.returncode == 0, train.stdout + train.stderr
    infer = run_tool("tools/infer.py", "-m", CONFIG, "-o", *common, f"runner.infer_output_path={tmp_path / 'inf'}",
                     f"runner.test_data_dir={os.path.join(FOLDER, 'data', 'train')}")
    assert infer.returncode == 0, infer.stdout + infer.stderr
    trained = json.loads((ckpt / "metrics.json").read_text())["train"][0]
    inferred = json.loads((tmp_path / "inf" / "metrics.json").read_text())["headline"]
    for name in ("auc_ctr", "auc_ctcvr", "auc_cvr"):
        assert trained[name] == pytest.approx(inferred[name], abs=2e-3), name


def test_esmm_learns_the_shipped_sample(tmp_path):
    """config.yaml as shipped (outputs redirected): every AUC clearly above chance on the test
    file, and the prediction file's columns give the same AUCs with scikit-learn."""
    out = [f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.infer_load_path={tmp_path / 'ckpt'}",
           f"runner.infer_output_path={tmp_path / 'infer'}"]
    for tool in ("tools/trainer.py", "tools/infer.py"):
        result = run_tool(tool, "-m", CONFIG, "-o", *out)
        assert result.returncode == 0, result.stdout + result.stderr
    headline = json.loads((tmp_path / "infer" / "metrics.json").read_text())["headline"]
    assert headline["auc_ctr"] > 0.64 and headline["auc_ctcvr"] > 0.66 and headline["auc_cvr"] > 0.7, headline
    frame = pd.read_csv(tmp_path / "infer" / "predictions_epoch1.csv")
    clicked = frame["click"] == 1
    assert roc_auc_score(frame["click"], frame["pred_ctr"]) == pytest.approx(headline["auc_ctr"], abs=2e-3)
    assert roc_auc_score(frame["purchase"][clicked], frame["pred_cvr"][clicked]) == pytest.approx(
        headline["auc_cvr"], abs=2e-3)


def test_same_seed_same_parameters(tmp_path):
    digests = []
    for run in ("a", "b"):
        result = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={tmp_path / run}",
                          "runner.epochs=1", f"runner.data_cache_dir={tmp_path / 'cache'}")
        assert result.returncode == 0, result.stdout + result.stderr
        digests.append(re.search(r"final parameter digest: (\w+)", result.stdout).group(1))
    assert digests[0] == digests[1]


def test_make_sample_reproduces_the_committed_files(tmp_path):
    result = run_tool(os.path.join("models", "multitask", "esmm", "data", "make_sample.py"), "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    for split in ("train", "test"):
        with open(tmp_path / split / f"sample_{split}.txt", "rb") as new, \
                open(os.path.join(FOLDER, "data", split, f"sample_{split}.txt"), "rb") as old:
            assert new.read() == old.read(), f"{split}: rerun make_sample.py and commit data/"


def test_esmm_tasks_are_fixed(tmp_path):
    result = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={tmp_path / 'x'}",
                      "hyper_parameters.tasks=[{name: cvr, label: purchase, type: binary}]")
    assert result.returncode == 2 and "hyper_parameters.tasks" in result.stderr


def test_unquoted_field_names_under_max_len_are_refused(tmp_path):
    """YAML reads an unquoted 109_14 as the int 10914: such a key would be silently ignored."""
    from models.common.spec import SpecError
    from tools.utils.config import parse_yaml

    assert parse_yaml("{109_14: 8}") == {10914: 8}  # why the configs quote field names
    config = model_config(CONFIG)
    config.data["hyper_parameters"]["max_len"][10914] = 8
    with pytest.raises(SpecError, match=r"max_len' has the key 10914.*quote field names"):
        load_dygraph_model(CONFIG)().check_config(config)
    config = model_config(CONFIG)
    config.data["hyper_parameters"]["max_len"]["999"] = 8
    with pytest.raises(SpecError, match="'999', which is not an Ali-CCP field"):
        load_dygraph_model(CONFIG)().check_config(config)


def test_config_max_len_bounds_are_applied(tmp_path):
    config, dm, model = setup_model(tmp_path)
    schema = importlib.import_module("models.common.datasets.aliccp").schema(config)
    assert schema["109_14"].max_len == 8 and schema["210"].max_len == 4 and schema["101"].max_len == 1

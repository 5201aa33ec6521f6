"""MetaEmb: base through the trainer, the generator's second-order meta-gradient, warm-up touching
only the new-ID rows, reproducibility and the whole protocol on the shipped sample."""
import json
import os

import numpy as np
import pandas as pd
import paddle
import pytest

from conftest import REPO, run_tool
from tools.utils.runtime import load_model
from models.common import coldstart
from models.common.loading import load_module

FOLDER = os.path.join(REPO, "models", "rank", "metaemb")
CONFIG = os.path.join(FOLDER, "config.yaml")
SCRIPT = "models/rank/metaemb/infer_warmup.py"


def _setup(*overrides):
    config, dm = load_model(CONFIG, list(overrides))
    return dm, config, coldstart


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The sample's base pre-trained by tools/trainer.py (shared by the tests below)."""
    folder = str(tmp_path_factory.mktemp("metaemb") / "ckpt")
    result = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={folder}")
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def test_base_learns_on_old_items(trained):
    with open(os.path.join(trained, "metrics.json")) as f:
        history = json.load(f)["train"]
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["auc"] > 0.7


def test_generator_receives_second_order_gradient():
    dm, config, warm = _setup("hyper_parameters.embed_dim=4", "hyper_parameters.fc_sizes=[8]")
    paddle.seed(0)
    model, generator = dm.create_model(config), dm.create_generator(config)
    sets = {s: warm.load_set(config, "meta_data_dir", f"meta_{s}") for s in "ab"}
    _, k = warm.item_blocks(sets["a"], "item_id")
    rows = np.arange(4 * k)  # 4 IDs
    a, b = warm.to_tensors(sets["a"], rows), warm.to_tensors(sets["b"], rows)
    for p in model.parameters():
        p.stop_gradient = True
    weight = generator.weight

    def meta_grad(cold_lr, first_order):
        loss, _, _ = warm.generator_meta_loss(model, generator, a, b, k, alpha=0.0, cold_lr=cold_lr, first_order=first_order)
        (grad,) = paddle.grad(loss, [weight])
        return float(loss), grad.numpy().astype(np.float64)

    _, second = meta_grad(50.0, False)
    _, first = meta_grad(50.0, True)
    # The inner step's Hessian term: present in the second-order gradient, absent from the first.
    assert np.abs(second - first).max() > 1e-3 * np.abs(second).max()
    # ... and it is the true gradient: central differences of the meta loss along it.
    direction = (second - first) / np.linalg.norm(second - first)
    eps = 1e-2
    original = weight.numpy().copy()
    values = []
    for sign in (1, -1):
        weight.set_value((original + sign * eps * direction).astype(np.float32))
        values.append(meta_grad(50.0, False)[0])
    weight.set_value(original)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(numeric - second.ravel() @ direction.ravel()) < 0.2 * abs((second - first).ravel() @ direction.ravel())
    # With no inner step both are the same.
    assert np.allclose(meta_grad(0.0, False)[1], meta_grad(0.0, True)[1])


def test_warm_up_changes_only_new_id_rows(trained):
    dm, config, warm = _setup(f"runner.model_save_path={trained}")
    from tools.utils.checkpoint import load_checkpoint

    model = dm.create_model(config)
    load_checkpoint(trained, config.get("runner.epochs") - 1, model)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    sets = warm.load_sets(config)
    items, item_data = warm.first_rows(sets["warm"]["a"])
    start = warm.base_rows(model, item_data)
    # The baseline's new-ID rows are the base table's own rows of those items.
    table = model.embedding.weight.numpy()
    assert np.array_equal(start.numpy(), table[items])
    results, final = warm.warm_up(model, dm, start, items, sets["warm"], sets["test"], config)
    assert [r["stage"] for r in results] == ["cold", "warm_a", "warm_b", "warm_c"]
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k].numpy()) for k in before)  # the base: bit-identical
    changed = np.abs(final.numpy() - start.numpy()).max(axis=1) > 0
    assert changed.all()  # every new item's row moved (each has rows in every warm-up batch)
    # The warmed-up model = the base with the new-ID rows replaced: only those rows differ.
    warmed = table.copy()
    warmed[items] = final.numpy()
    differs = np.flatnonzero(np.abs(warmed - table).max(axis=1) > 0)
    assert set(differs) == set(items)
    # Warming up lowers the hold-out loss of the baseline arm.
    assert results[-1]["logloss"] < results[0]["logloss"]


def test_protocol_end_to_end_and_reproducible(trained, tmp_path):
    outputs = []
    for name in ("one", "two"):
        out = str(tmp_path / name)
        result = run_tool(SCRIPT, "-m", CONFIG, "-o", f"runner.model_save_path={trained}",
                          f"runner.infer_output_path={out}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "AUC vs base-cold" in result.stdout
        outputs.append(out)
    frames = [pd.read_csv(os.path.join(o, "warmup.csv")) for o in outputs]
    assert len(frames[0]) == 8 and set(frames[0].arm) == {"baseline", "metaemb"}
    pd.testing.assert_frame_equal(frames[0], frames[1])  # same seed, same numbers
    for name in ("warmup_summary.csv", "warmup.json", "warmup.png", "metrics.json"):
        assert os.path.getsize(os.path.join(outputs[0], name)) > 0
    with open(os.path.join(outputs[0], "metrics.json")) as f:
        headline = json.load(f)["headline"]
    # The sample's item features determine its items' latent vectors (and old and new items click
    # alike): the generator's rows beat random ones at cold start, and warm-up helps both arms.
    assert headline["auc_cold_metaemb"] > headline["auc_cold_baseline"] > 0.65
    assert headline["logloss_cold_metaemb"] < headline["logloss_cold_baseline"]
    assert headline["auc_warm_c_baseline"] > headline["auc_cold_baseline"]


def test_three_seeds_pretrain_their_own_base(tmp_path):
    out = str(tmp_path / "seeds")
    result = run_tool(SCRIPT, "-m", CONFIG, "--seeds", "2", "-o", f"runner.model_save_path={tmp_path / 'unused'}",
                      f"runner.infer_output_path={out}", "runner.epochs=1", "hyper_parameters.meta_epochs=1")
    assert result.returncode == 0, result.stdout + result.stderr
    frame = pd.read_csv(os.path.join(out, "warmup.csv"))
    assert sorted(frame.seed.unique()) == [2019, 2020]
    assert os.path.isdir(os.path.join(out, "seed2020", "base", "0"))
    summary = pd.read_csv(os.path.join(out, "warmup_summary.csv"))
    assert (summary.seeds == 2).all() and (summary.auc_std[summary.stage == "cold"] > 0).all()
    base = frame[(frame.arm == "baseline") & (frame.stage == "cold")]
    assert np.allclose(base.auc_change_pct, 0.0)


def test_recentred_logloss_matches_the_click_rate():
    _, _, warm = _setup()
    labels = np.array([1, 0, 0, 0])
    preds = np.array([0.9, 0.8, 0.7, 0.6])  # mean 0.75 vs click rate 0.25
    value = warm.recentred_logloss(labels, preds)
    assert value < warm.logloss(labels, preds)
    # the same ranking at the right level: no offset to find
    level = np.array([0.4, 0.3, 0.2, 0.1])
    assert np.isclose(warm.recentred_logloss(labels, level), warm.logloss(labels, level), atol=1e-6)


def test_reader_rejects_bad_files(tmp_path):
    dm, config, _ = _setup()
    reader = load_module(os.path.join(FOLDER, "movielens_reader.py"))
    from models.common.data import DataFormatError

    with np.load(os.path.join(FOLDER, "data", "sample", "test", "test.npz")) as data:
        columns = {k: data[k] for k in data.files}
    bad = dict(columns)
    del bad["genres_length"]
    np.savez(tmp_path / "missing.npz", **bad)
    with pytest.raises(DataFormatError, match="missing.npz: missing column.*genres_length"):
        reader.RecDataset([str(tmp_path / "missing.npz")], config)
    bad = dict(columns, user_id=columns["user_id"].copy())
    bad["user_id"][3] = 7000  # beyond num_users
    np.savez(tmp_path / "range.npz", **bad)
    with pytest.raises(DataFormatError, match="range.npz, row 3: user_id has value 7000 outside"):
        reader.RecDataset([str(tmp_path / "range.npz")], config)


def test_tools_infer_runs_the_warm_up_protocol_as_infer_warmup(trained, tmp_path):
    """infer_warmup.py is tools/infer.py: the cold-start paradigm's evaluation, the same numbers."""
    results = []
    for script in ("tools/infer.py", SCRIPT):
        out = str(tmp_path / os.path.basename(script))
        result = run_tool(script, "-m", CONFIG, "-o", f"runner.model_save_path={trained}",
                          f"runner.infer_output_path={out}")
        assert result.returncode == 0, result.stdout + result.stderr
        with open(os.path.join(out, "metrics.json")) as f:
            results.append(json.load(f)["headline"])
    assert results[0] == results[1] and results[0]["auc_cold_metaemb"] > 0.5


def test_missing_set_named(trained, tmp_path):
    result = run_tool(SCRIPT, "-m", CONFIG, "-o", f"runner.model_save_path={trained}",
                      f"runner.warm_data_dir={tmp_path}", f"runner.infer_output_path={tmp_path / 'o'}")
    assert result.returncode == 2 and "runner.warm_data_dir" in result.stderr and "warm_a.npz" in result.stderr


@pytest.mark.parametrize("name", ["config.yaml", "config_ml100k.yaml", "config_bigdata.yaml"])
def test_configs_load(name):
    config, dm = load_model(os.path.join(FOLDER, name))
    assert config.get("runner.meta_data_dir").endswith("meta") and config.get("hyper_parameters.alpha") == 0.1


def test_sample_is_reproduced_by_its_script(tmp_path):
    result = run_tool("models/rank/metaemb/data/make_sample.py", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = os.path.join(FOLDER, "data", "sample")
    for folder, name in [("pretrain", "pretrain"), ("meta", "meta_a"), ("meta", "meta_d"), ("warm", "warm_c"),
                         ("test", "test")]:
        with np.load(os.path.join(shipped, folder, f"{name}.npz")) as a, \
                np.load(os.path.join(tmp_path, folder, f"{name}.npz")) as b:
            assert sorted(a.files) == sorted(b.files)
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
    with open(os.path.join(shipped, "meta.json"), "rb") as a, open(os.path.join(tmp_path, "meta.json"), "rb") as b:
        assert a.read() == b.read()
    names = {os.path.relpath(os.path.join(r, n), tmp_path) for r, _, files in os.walk(tmp_path) for n in files}
    assert "manifest.json" not in {os.path.basename(n) for n in names} and len(names) == 10  # 9 .npz, meta.json

"""tools/export.py for every model: the saved inference graphs, run by a Paddle Inference
predictor, give the trained dygraph model's outputs on rows the export did not check; the
manifest says what each graph takes; a failed export leaves nothing behind."""
import glob
import json
import os

import numpy as np
import paddle
import pytest

from conftest import REPO
from models.common.data.loader import create_dataset
from models.common.export import Graph, as_arrays, column_specs
from models.common.loading import load_reader
from tools.export import main as export_main
from tools.trainer import train
from tools.utils.checkpoint import load_checkpoint
from tools.utils.runtime import parse_args, setup

CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "models", "*", "*", "config.yaml")))
CONFIGS.append(os.path.join("models", "multitask", "mmoe", "config_aliccp.yaml"))  # MMoE on bags of ids


def overrides(tmp_path):
    return [f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.data_cache_dir={tmp_path / 'cache'}",
            "runner.epochs=1", "runner.print_interval=100000", f"runner.infer_load_path={tmp_path / 'ckpt'}",
            "runner.infer_start_epoch=0", "runner.infer_end_epoch=1"]


def trained_export(config, tmp_path, *flags):
    """Train ``config`` one epoch into tmp_path/ckpt, export it (``flags``: export.py's) to
    tmp_path/export; -> (ctx, export dir)."""
    args = ["-m", os.path.join(REPO, config), "-o", *overrides(tmp_path)]
    train(setup(parse_args("test", args), distributed=False))
    export_main([*args, "--out", str(tmp_path / "export"), *flags])
    return setup(parse_args("test", args), distributed=False), tmp_path / "export"


def test_every_model_is_listed():
    assert len(CONFIGS) >= 13 and all(os.path.isfile(os.path.join(REPO, c)) for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS)
def test_predictor_gives_the_models_outputs(config, tmp_path):
    ctx, out = trained_export(config, tmp_path)
    with open(out / "manifest.json") as f:
        manifest = json.load(f)
    serving = manifest["serving"]
    assert manifest["epoch"] == 0 and manifest["model_config_digest"] and serving["model"] == ctx.dygraph_model.model_name()
    dm, config_ = ctx.dygraph_model, ctx.config
    model = dm.create_model(config_)
    load_checkpoint(str(tmp_path / "ckpt"), 0, model)
    model.eval()
    rows = create_dataset(load_reader(config_, "train"), config_, "train")
    start = min(256, max(len(rows) - 64, 0))  # rows the export's own check did not see
    batch = rows.take(np.arange(start, min(start + 200, len(rows))))
    specs = column_specs(dm.schema(config_))
    served = dm.serving_graphs(model, config_)
    assert set(served) == set(serving["graphs"])
    for name, entry in serving["graphs"].items():
        assert entry["inputs"], name
        for column, spec in entry["inputs"].items():  # declared as the schema declares it
            assert spec == specs[column]
        with paddle.no_grad():
            expected = served[name]({c: paddle.to_tensor(a) for c, a in as_arrays(batch, entry["inputs"]).items()})
        got = Graph(str(out), entry).run(as_arrays(batch, entry["inputs"]))
        assert list(got) == entry["outputs"] and len(expected) == len(entry["outputs"])
        for output, value in zip(entry["outputs"], expected):
            assert got[output].shape[0] == len(batch[next(iter(entry["inputs"]))])
            np.testing.assert_allclose(got[output].reshape(-1), value.numpy().reshape(-1), atol=1e-5, rtol=0)
    if "catalog" in serving:  # every item, through the item tower
        ids = np.load(out / "catalog" / "ids.npy")
        vectors = np.load(out / "catalog" / "vectors.npy")
        assert len(ids) == serving["catalog"]["items"] == len(vectors) and len(np.unique(ids)) == len(ids)
        with paddle.no_grad():
            again = model.item_embedding(paddle.to_tensor(ids[:50])).numpy()
        np.testing.assert_allclose(vectors[:50], again, atol=1e-5, rtol=0)


def test_export_refuses_a_non_empty_folder_and_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
    config = os.path.join("models", "rank", "deepfm", "config.yaml")
    ctx, out = trained_export(config, tmp_path)
    before = sorted(os.listdir(out))
    with pytest.raises(SystemExit):
        export_main(["-m", os.path.join(REPO, config), "-o", *overrides(tmp_path), "--out", str(out)])
    assert sorted(os.listdir(out)) == before

    import models.common.export as export_module
    monkeypatch.setattr(export_module, "PARITY", -1.0)  # no predictor can pass: the export must fail whole
    with pytest.raises(RuntimeError, match="differs from the model"):
        export_main(["-m", os.path.join(REPO, config), "-o", *overrides(tmp_path), "--out", str(tmp_path / "other")])
    assert not os.path.exists(tmp_path / "other")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".other")]  # no staging folder left


@pytest.mark.parametrize("config", CONFIGS)
def test_onnx_export_gives_the_models_outputs(config, tmp_path):
    """paddle2onnx + onnxruntime are optional: tested where installed."""
    pytest.importorskip("paddle2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    ctx, out = trained_export(config, tmp_path, "--onnx")
    with open(out / "manifest.json") as f:
        graphs = json.load(f)["serving"]["graphs"]
    dm, config_ = ctx.dygraph_model, ctx.config
    model = dm.create_model(config_)
    load_checkpoint(str(tmp_path / "ckpt"), 0, model)
    model.eval()
    rows = create_dataset(load_reader(config_, "train"), config_, "train")
    batch = rows.take(np.arange(min(300, len(rows))))
    served = dm.serving_graphs(model, config_)
    for name, entry in graphs.items():
        session = onnxruntime.InferenceSession(str(out / entry["onnx"]["file"]), providers=["CPUExecutionProvider"])
        columns = as_arrays(batch, entry["inputs"])
        got = session.run(None, {i.name: columns[i.name] for i in session.get_inputs()})
        with paddle.no_grad():
            expected = served[name]({c: paddle.to_tensor(a) for c, a in columns.items()})
        for value, reference in zip(got, expected):
            np.testing.assert_allclose(value.reshape(-1), reference.numpy().reshape(-1), atol=1e-5, rtol=0)


def test_onnx_without_its_packages_is_refused_by_name(tmp_path, monkeypatch):
    import importlib.util

    import models.common.export as export_module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert "onnxruntime" in export_module.check_onnx_available()
    with pytest.raises(SystemExit):
        export_main(["-m", os.path.join(REPO, "models", "rank", "deepfm", "config.yaml"), "-o", *overrides(tmp_path),
                     "--out", str(tmp_path / "export"), "--onnx"])
    assert not os.path.exists(tmp_path / "export")

"""DeepFM's synthetic sample (data/make_sample.py): reproducible byte for byte, in the exact slot
format of the real rows, and learnable by config.yaml as shipped."""
import json
import importlib
import os

import numpy as np

from tests.conftest import model_config, DEEPFM_CONFIG, run_tool

FOLDER = os.path.dirname(DEEPFM_CONFIG)
FILES = {"train": "sample_train.txt", "test": "sample_test.txt"}


def committed(split):
    return os.path.join(FOLDER, "data", "synthetic", split, FILES[split])


def test_make_sample_reproduces_the_committed_files(tmp_path):
    result = run_tool(os.path.join("models", "rank", "deepfm", "data", "make_sample.py"), "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    written = sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs)
    assert written == sorted(os.path.join(split, name) for split, name in FILES.items())
    for split, name in FILES.items():
        with open(tmp_path / split / name, "rb") as new, open(committed(split), "rb") as old:
            assert new.read() == old.read(), f"{split}: rerun make_sample.py and commit data/synthetic"


def test_config_points_at_the_synthetic_sample():
    config = model_config(DEEPFM_CONFIG)
    assert config.get("sample_data") == "synthetic"
    for key, split in (("runner.train_data_dir", "train"), ("runner.test_data_dir", "test")):
        assert config.get(key) == os.path.dirname(committed(split))


def test_synthetic_sample_has_the_real_rows_format():
    config = model_config(DEEPFM_CONFIG)
    reader = importlib.import_module("models.common.datasets.criteo")
    ids = {}
    for split, rows in (("train", 1000), ("test", 400)):
        path = committed(split)
        with open(path) as f:
            lines = f.read().splitlines()
        assert len(lines) == rows
        names = [[t.split(":")[0] for t in line.split(" ")] for line in lines]
        assert all(n == reader.SLOTS for n in names)  # same tokens as data/train
        batch = reader.RecDataset([path], config).take(np.arange(rows))
        label, dense = batch["click"], batch["dense_feature"]
        sparse = np.stack([batch[name] for name in reader.SPARSE], axis=1)
        assert set(np.unique(label)) == {0, 1} and 0.2 < label.mean() < 0.4
        assert 0 <= dense.min() and dense.max() <= 1
        assert 0 <= sparse.min() and sparse.max() <= 1000000
        ids[split] = sparse
    # Power-law vocabularies: test rows mostly reuse ids seen in training.
    seen = np.mean([np.isin(ids["test"][:, f], ids["train"][:, f]).mean() for f in range(26)])
    assert seen > 0.5


def test_deepfm_learns_the_synthetic_sample(tmp_path):
    """config.yaml as shipped (outputs redirected), through tools/trainer.py and tools/infer.py."""
    out = [f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.infer_load_path={tmp_path / 'ckpt'}",
           f"runner.infer_output_path={tmp_path / 'infer'}"]
    for tool in ("tools/trainer.py", "tools/infer.py"):
        result = run_tool(tool, "-m", DEEPFM_CONFIG, "-o", *out)
        assert result.returncode == 0, result.stdout + result.stderr
    with open(tmp_path / "infer" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["headline"]["auc"] > 0.65, metrics

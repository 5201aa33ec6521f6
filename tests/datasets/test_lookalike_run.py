"""datasets/Lookalike/run.sh: an already-downloaded archive is verified (trust on first use,
then checksum) and unpacked into the folders config_bigdata.yaml reads; --raw takes a relative path."""
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd

from tests.conftest import REPO
from tests.models.metaheac.test_preprocess import _raw

SCRIPT_DIR = os.path.join(REPO, "datasets", "Lookalike")
SAMPLE = os.path.join(REPO, "models", "multitask", "metaheac", "data")
MULTI_HOT = ["interest1", "interest2", "interest3", "kw1", "kw2", "topic1", "topic2"]


def copy_scripts(tmp_path):
    folder = tmp_path / "datasets" / "Lookalike"
    folder.mkdir(parents=True)
    for name in ("run.sh", "preprocess.py"):
        shutil.copy(os.path.join(SCRIPT_DIR, name), folder / name)
    return folder


def as_published_pickle(npz_path, pkl_path):
    """The published format: a DataFrame whose multi-hot cells are numpy arrays."""
    with np.load(npz_path, allow_pickle=False) as data:
        frame = pd.DataFrame({c: (list(data[c]) if c in MULTI_HOT else data[c]) for c in data.files})
    frame.to_pickle(pkl_path)


def run(script, *args, cwd):
    # The copied scripts import the data set's module (models/common/datasets/lookalike.py) from this checkout.
    return subprocess.run(["bash", str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHON=sys.executable, PYTHONPATH=REPO))


def test_archive_is_verified_then_unpacked(tmp_path):
    folder = copy_scripts(tmp_path)
    inside = tmp_path / "pickles" / "Lookalike_data"
    inside.mkdir(parents=True)
    for sub, name in [("train", "train_stage1"), ("test_hot", "test_hot_stage1"), ("test_hot", "test_hot_stage2"),
                      ("test_cold", "test_cold_stage1"), ("test_cold", "test_cold_stage2")]:
        as_published_pickle(os.path.join(SAMPLE, sub, name + ".npz"), inside / (name + ".pkl"))
    archive = tmp_path / "downloads" / "Lookalike_data.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(inside.iterdir()):
            z.write(path, f"Lookalike_data/{path.name}")
    work = tmp_path / "work"
    work.mkdir()
    script = folder / "run.sh"

    first = run(script, "--archive", "../downloads/Lookalike_data.zip", cwd=work)  # relative to cwd
    assert first.returncode == 3 and "no recorded checksum" in first.stderr
    assert not (folder / "train_data").exists()

    trusted = run(script, "--archive", "../downloads/Lookalike_data.zip", "--trust", cwd=work)
    assert trusted.returncode == 0, trusted.stderr
    assert "Lookalike_data.zip" in (folder / "checksums.sha256").read_text()
    for sub, names in {"train_data": ["train_stage1"], "test_hot_data": ["test_hot_stage1", "test_hot_stage2"],
                       "test_cold_data": ["test_cold_stage1", "test_cold_stage2"]}.items():
        assert sorted(os.listdir(folder / sub)) == sorted(n + ".pkl" for n in names)
    assert not (folder / "unpacked").exists()

    # A different archive under the recorded name is refused.
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("extra.txt", "tampered")
    (folder / "Lookalike_data.zip").unlink()
    tampered = run(script, "--archive", str(archive), cwd=work)
    assert tampered.returncode == 4 and "checksum mismatch" in tampered.stderr


def test_raw_accepts_a_relative_folder(tmp_path):
    folder = copy_scripts(tmp_path)
    _raw(str(tmp_path / "raw"))
    result = run(folder / "run.sh", "--raw", "raw", "--threshold", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for sub in ("train_data", "test_hot_data", "test_cold_data"):
        assert os.listdir(folder / sub)

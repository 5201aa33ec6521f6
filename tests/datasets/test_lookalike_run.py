"""datasets/Lookalike/run.sh: an already-downloaded archive is verified (trust on first use,
then checksum) and unpacked into the folders config_bigdata.yaml reads; --raw takes a relative path;
outputs carry manifests, a second run is refused unless --replace, a killed run leaves no half output."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd

from models.common.artifacts import read_manifest
from tests.conftest import REPO
from tests.datasets.test_aliccp_run import kill_and_rerun, snapshot
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


FOLDERS = ("train_data", "test_hot_data", "test_cold_data")


def make_archive(tmp_path):
    """A zip of the sample's files as the published pickles, as the published archive lays them out."""
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
    return archive


def test_archive_is_verified_then_unpacked(tmp_path):
    folder = copy_scripts(tmp_path)
    archive = make_archive(tmp_path)
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
        assert sorted(os.listdir(folder / sub)) == sorted([n + ".pkl" for n in names] + ["manifest.json"])
        found = read_manifest(folder / sub)
        assert found["files"] == {n + ".pkl": {"bytes": (folder / sub / (n + ".pkl")).stat().st_size,
                                               "rows": len(pd.read_pickle(folder / sub / (n + ".pkl")))}
                                  for n in names}
    assert len({read_manifest(folder / sub)["fingerprints"]["id_space"] for sub in FOLDERS}) == 1
    assert not (folder / "unpacked").exists() and not (folder / "max_idxs.json").exists()

    # A different archive under the recorded name is refused, and the installed files stay.
    before = snapshot(str(folder), FOLDERS)
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("extra.txt", "tampered")
    (folder / "Lookalike_data.zip").unlink()
    tampered = run(script, "--archive", str(archive), "--replace", cwd=work)
    assert tampered.returncode == 4 and "checksum mismatch" in tampered.stderr
    assert snapshot(str(folder), FOLDERS) == before


def test_raw_accepts_a_relative_folder(tmp_path):
    folder = copy_scripts(tmp_path)
    _raw(str(tmp_path / "raw"))
    result = run(folder / "run.sh", "--raw", "raw", "--threshold", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for sub in ("train_data", "test_hot_data", "test_cold_data"):
        assert os.listdir(folder / sub)


def test_raw_then_archive_into_one_folder_is_refused_unless_replace(tmp_path):
    """The two sources into one folder: without --replace the second is refused and the first
    output stays as it was; with it nothing of the first run is left (no npz beside the pickles,
    no max_idxs.json of the raw files) - and the other way round."""
    folder = copy_scripts(tmp_path)
    _raw(str(tmp_path / "raw"))
    archive = make_archive(tmp_path)
    script = folder / "run.sh"
    names = FOLDERS + ("max_idxs.json",)
    result = run(script, "--raw", str(tmp_path / "raw"), "--threshold", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    before = snapshot(str(folder), names)

    refused = run(script, "--archive", str(archive), "--trust", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and str(folder / "train_data") in refused.stderr
    assert "--replace" in refused.stderr and snapshot(str(folder), names) == before
    assert not (folder / "Lookalike_data.zip").exists()  # refused before anything was copied or unpacked

    replaced = run(script, "--archive", str(archive), "--trust", "--replace", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    for sub in FOLDERS:
        assert not [n for n in os.listdir(folder / sub) if n.endswith(".npz")]
    assert not (folder / "max_idxs.json").exists()
    pickles = {sub: read_manifest(folder / sub)["fingerprints"]["id_space"] for sub in FOLDERS}

    replaced = run(script, "--raw", str(tmp_path / "raw"), "--threshold", "1", "--replace", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert snapshot(str(folder), names).keys() == before.keys()  # npz files only, as the first run
    for sub in FOLDERS:
        assert not [n for n in os.listdir(folder / sub) if n.endswith(".pkl")]
        assert read_manifest(folder / sub)["fingerprints"]["id_space"] != pickles[sub]
    side = json.loads((folder / "max_idxs.json").read_text())
    assert {read_manifest(folder / sub)["fingerprints"]["id_space"] for sub in FOLDERS} == {side["id_space"]}


def test_usage_errors_exit_with_status_2(tmp_path):
    folder = copy_scripts(tmp_path)
    for args in (["--raw", "missing"], ["--archive", "missing.zip"], ["--bogus"]):
        result = run(folder / "run.sh", *args, cwd=tmp_path)
        assert result.returncode == 2 and "run.sh: error:" in result.stderr, (args, result.stderr)


def test_killed_run_leaves_no_half_output_and_a_rerun_gives_the_same_bytes(tmp_path):
    folder = copy_scripts(tmp_path)
    _raw(str(tmp_path / "raw"))
    command = ["bash", str(folder / "run.sh"), "--raw", str(tmp_path / "raw"), "--threshold", "1", "--replace"]
    kill_and_rerun(command, str(folder), FOLDERS, "max_idxs.json", seed=11)

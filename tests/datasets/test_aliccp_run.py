"""datasets/ali-ccp/run.sh + preprocess.py on tiny hand-made raw Ali-CCP files: the skeleton +
common-features join, id remapping, label-leakage guard and row checks."""
import importlib
import os
import subprocess
import sys

import pytest

from tests.conftest import model_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN_SH = os.path.join(REPO, "datasets", "ali-ccp", "run.sh")
S, A, B = "\x01", "\x02", "\x03"


def feature_list(pairs):
    return S.join(f"{f}{A}{v}{B}1.0" for f, v in pairs)


SKELETON_TRAIN = [("1", 1, 0, "aaaa000000000001", [("205", 90001), ("206", 90002), ("216", 90003)]),
                  ("2", 1, 1, "aaaa000000000002", [("205", 90004), ("999", 5), ("853", 90005), ("853", 90006)]),
                  ("3", 0, 0, "aaaa000000000001", [("205", 90001)])]
COMMON_TRAIN = [("aaaa000000000001", [("101", 7), ("109_14", 8), ("109_14", 9), ("121", 10)]),
                ("aaaa000000000002", [("101", 11), ("150_14", 12)])]
SKELETON_TEST = [("9", 0, 0, "bbbb000000000001", [("205", 90001), ("205", 77777)])]
COMMON_TEST = [("bbbb000000000001", [("101", 11)])]


def write_raw(folder, skeleton_train=SKELETON_TRAIN, bad_line=None):
    folder.mkdir(exist_ok=True)

    def skeleton(rows):
        return "".join(f"{sid},{c},{b},{k},{len(p)},{feature_list(p)}\n" for sid, c, b, k, p in rows)

    def common(rows):
        return "".join(f"{k},{len(p)},{feature_list(p)}\n" for k, p in rows)
    text = skeleton(skeleton_train)
    if bad_line is not None:
        text += bad_line + "\n"
    (folder / "sample_skeleton_train.csv").write_text(text)
    (folder / "common_features_train.csv").write_text(common(COMMON_TRAIN))
    (folder / "sample_skeleton_test.csv").write_text(skeleton(SKELETON_TEST))
    (folder / "common_features_test.csv").write_text(common(COMMON_TEST))


def run(raw, out):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", RUN_SH, "--raw", str(raw), "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_join_remap_and_paddlerec_format(tmp_path):
    write_raw(tmp_path / "raw")
    result = run(tmp_path / "raw", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    train = (tmp_path / "out" / "train_data" / "train.txt").read_text().splitlines()
    test = (tmp_path / "out" / "test_data" / "test.txt").read_text().splitlines()
    # Skeleton + common features of each row, in FIELDS order (101, 109_14, ..., 121, ..., 205, ...),
    # ids numbered by first appearance in training; field 999 is not an ESMM field.
    assert train == ["1,1,0,101:1,109_14:2,109_14:3,121:4,205:5,206:6,216:7",
                     "2,1,1,101:8,150_14:9,205:10,853:11,853:12",
                     "3,0,0,101:1,109_14:2,109_14:3,121:4,205:5"]
    assert test == ["9,0,0,101:8,205:5"]  # 205:77777 never seen in training: dropped
    assert "sparse_feature_number: 13" in result.stdout
    assert "dropped): 1" in result.stdout


def test_label_leakage_guard_features_do_not_depend_on_labels(tmp_path):
    """Flipping click/conversion in the raw files changes the two label columns and nothing else."""
    write_raw(tmp_path / "raw")
    flipped = [(sid, 1 - c, 0, k, p) for sid, c, b, k, p in SKELETON_TRAIN]
    write_raw(tmp_path / "raw2", skeleton_train=flipped)
    for raw, out in (("raw", "out"), ("raw2", "out2")):
        result = run(tmp_path / raw, tmp_path / out)
        assert result.returncode == 0, result.stdout + result.stderr
    a = (tmp_path / "out" / "train_data" / "train.txt").read_text().splitlines()
    b = (tmp_path / "out2" / "train_data" / "train.txt").read_text().splitlines()
    assert [x.split(",")[1:3] for x in a] != [x.split(",")[1:3] for x in b]
    for x, y in zip(a, b):
        xs, ys = x.split(","), y.split(",")
        assert xs[0] == ys[0] and xs[3:] == ys[3:]
        assert all(t.split(":")[0] not in ("click", "conversion", "purchase") for t in xs[3:])


@pytest.mark.parametrize("line, message", [
    (f"4,1,0,aaaa000000000001,2,{feature_list([('205', 1)])}", "line 4: feature_num is 2 but the line has 1 features"),
    (f"4,1,0,cccc000000000009,1,{feature_list([('205', 1)])}", "line 4: its common_feature_index is not in the common"),
    (f"4,0,1,aaaa000000000001,1,{feature_list([('205', 1)])}", "line 4: conversion without a click"),
    ("4,1,0,aaaa000000000001,1", "line 4: expected 6 comma-separated columns, found 5"),
    (f"4,1,0,aaaa000000000001,1,205{A}x{B}1.0", "line 4: 'x' is not a number"),
    (f"4,1,0,aaaa000000000001,1,205{B}1.0", "line 4: feature '205\\x031.0' is not field"),
])
def test_bad_raw_rows_name_file_and_line(tmp_path, line, message):
    write_raw(tmp_path / "raw", bad_line=line)
    result = run(tmp_path / "raw", tmp_path / "out")
    assert result.returncode != 0
    assert "sample_skeleton_train.csv, " + message in result.stderr, result.stderr
    assert not (tmp_path / "out" / "train_data").exists()


def test_paddlerec_preprocessed_files_are_installed_as_they_are(tmp_path, shared_data):
    src = tmp_path / "src"
    src.mkdir()
    for split, name in (("train", "traindata_10w.csv"), ("test", "testdata_10w.csv")):
        with open(os.path.join(shared_data, "ali-ccp", "paddlerec_esmm", split, "small.txt"), "rb") as f:
            (src / name).write_bytes(f.read())
    result = run(src, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "out" / "train_data" / "traindata_10w.csv").read_bytes() == (src / "traindata_10w.csv").read_bytes()
    (src / "testdata_10w.csv").write_text("id,click,buy\n")
    result = run(src, tmp_path / "out2")
    assert result.returncode != 0 and "testdata_10w.csv, line 1: not in PaddleRec's Ali-CCP format" in result.stderr


def test_columnar_output_reads_as_the_same_batches(tmp_path):
    """`--format columnar` (our columnar CSV) and the default PaddleRec format give the readers
    the same rows; a field longer than its --max-len names the line."""
    import numpy as np

    
    write_raw(tmp_path / "raw")
    env = dict(os.environ, PYTHON=sys.executable)
    widths = ["--max-len", "109_14=3", "110_14=1", "127_14=1", "150_14=2", "853=2", "210=2"]
    for out, extra in (("pr", []), ("col", ["--", "--format", "columnar", *widths])):
        result = subprocess.run(["bash", RUN_SH, "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / out), *extra],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "col" / "train_data" / "train.txt").read_text().startswith("click,purchase,101:0,101_length,")
    esmm = os.path.join(REPO, "models", "multitask", "esmm")
    config = model_config(os.path.join(esmm, "config.yaml"), [
        f"runner.data_cache_dir={tmp_path / 'cache'}", "hyper_parameters.sparse_feature_number=13",
        "hyper_parameters.max_len.109_14=3", "hyper_parameters.max_len.110_14=1", "hyper_parameters.max_len.127_14=1",
        "hyper_parameters.max_len.150_14=2", "hyper_parameters.max_len.853=2", "hyper_parameters.max_len.210=2"])
    reader = importlib.import_module("models.common.datasets.aliccp")
    for split in ("train", "test"):
        a = reader.RecDataset([str(tmp_path / "pr" / f"{split}_data" / f"{split}.txt")], config)
        b = reader.RecDataset([str(tmp_path / "col" / f"{split}_data" / f"{split}.txt")], config)
        rows = np.arange(len(a))
        assert len(a) == len(b) and len(a) > 0
        ta, tb = a.take(rows), b.take(rows)
        assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    result = subprocess.run(["bash", RUN_SH, "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "bad"), "--",
                             "--format", "columnar", "--max-len", "109_14=1"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode != 0
    assert "sample_skeleton_train.csv, line 1: field 109_14 has 2 ids, more than --max-len 109_14=1" in result.stderr

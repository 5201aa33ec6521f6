"""datasets/ali-ccp/run.sh + preprocess.py on tiny hand-made raw Ali-CCP files: the skeleton +
common-features join, id remapping, label-leakage guard and row checks; the outputs' manifests and
id space, --replace, and a run killed at random moments."""
import contextlib
import importlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from models.common import artifacts
from models.common.artifacts import read_manifest
from models.common.data import list_data_files
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


# ---- what the outputs are: manifests, one id space, --replace ---------------------------------
PADDLEREC_FILES = {"traindata_10w.csv": "1,1,0,101:1,205:3\n2,0,0,101:2,853:4,853:5\n7,1,1,101:1\n",
                   "testdata_10w.csv": "8,0,0,101:2,205:3\n"}
DATA_FOLDERS = ("train_data", "test_data")


def write_paddlerec(folder):
    folder.mkdir(exist_ok=True)
    for name, text in PADDLEREC_FILES.items():
        (folder / name).write_text(text)


def run_replacing(raw, out, *extra):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", RUN_SH, "--raw", str(raw), "--out", str(out), "--replace", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def snapshot(out, names):
    """{relative path: bytes} of every file under ``out/<name>`` (manifests without their time)."""
    files = {}
    for name in names:
        top = os.path.join(out, name)
        paths = [top] if os.path.isfile(top) else [os.path.join(root, f) for root, _, fs in os.walk(top) for f in fs]
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            if os.path.basename(path) == "manifest.json":
                data = json.loads(data)
                data.pop("created")
            files[os.path.relpath(path, out)] = data
    return files


def assert_whole_or_absent(out, folders, side_file):
    """What a killed run may leave under the final names: each data folder absent or complete (a
    manifest listing exactly what it holds, sizes checked); a side file only beside the folders
    of its own run (it is written last)."""
    spaces = {}
    for name in folders:
        folder = os.path.join(out, name)
        if not os.path.exists(folder):
            continue
        found = artifacts.read_manifest(folder)
        assert found is not None, f"{folder} is under its final name without a manifest"
        listed = artifacts.manifest_files(folder, found, name)  # present, same size, nothing else
        assert sorted(os.listdir(folder)) == sorted([os.path.basename(p) for p in listed] + ["manifest.json"])
        spaces[name] = found["fingerprints"]["id_space"]
    side = os.path.join(out, side_file)
    if os.path.exists(side):
        with open(side, encoding="utf-8") as f:
            space = json.load(f)["id_space"]
        assert spaces == {name: space for name in folders}, (spaces, space)


def kill_and_rerun(command, out, folders, side_file, seed, kills=4):
    """Run ``command`` (which writes ``folders`` and ``side_file`` under ``out``, replacing) once
    to the end, then again killed (SIGKILL to its process group) at seeded random moments - from
    the start, or once its first staging folder appeared (while it writes) - checking after each
    kill that no half output is under a final name; then to the end: the same bytes as the
    uninterrupted run, and nothing left of the killed runs."""
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=REPO)

    def staging():
        return os.path.isdir(out) and any(".staging-" in name for name in os.listdir(out))

    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    staged = published = None
    while process.poll() is None:
        now, writing = time.monotonic(), staging()
        if staged is None and writing:
            staged = now
        elif staged is not None and published is None and not writing:
            published = now
        time.sleep(0.001)
    ended = time.monotonic()
    assert process.returncode == 0, process.stdout.read().decode()
    reference = snapshot(out, folders + (side_file,))
    assert set(reference) >= {os.path.join(name, "manifest.json") for name in folders} | {side_file}
    whole = ended - started
    window = (published or ended) - (staged or started)
    for name in folders:
        shutil.rmtree(os.path.join(out, name))
    os.remove(os.path.join(out, side_file))

    rng = random.Random(seed)
    for i in range(kills):
        while_writing = i % 2 == 1
        delay = rng.uniform(0, window if while_writing else whole)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        while while_writing and process.poll() is None and not staging():
            time.sleep(0.001)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert_whole_or_absent(out, folders, side_file)

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(out, folders + (side_file,)) == reference
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # a killed run's leftovers removed


def preprocess(*args):
    """datasets/ali-ccp/preprocess.py's main, in this process (no interpreter start): -> exit status."""
    spec = importlib.util.spec_from_file_location("aliccp_preprocess", os.path.join(REPO, "datasets", "ali-ccp",
                                                                                   "preprocess.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in args])


def test_outputs_carry_manifests_and_one_id_space(tmp_path):
    write_raw(tmp_path / "raw")
    result = run(tmp_path / "raw", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "out"
    meta = json.loads((out / "meta.json").read_text())
    spaces = set()
    for split, rows in (("train", 3), ("test", 1)):
        found = read_manifest(out / f"{split}_data")
        assert found["files"] == {f"{split}.txt": {"bytes": (out / f"{split}_data" / f"{split}.txt").stat().st_size,
                                                   "rows": rows}}
        assert found["data_set"] == "aliccp" and found["kind"] == f"Ali-CCP {split} rows (paddlerec)"
        spaces.add(found["fingerprints"]["id_space"])
    assert spaces == {meta["id_space"]} and meta["sparse_feature_number"] == 13
    assert sorted(meta["sources"]) == sorted(f.name for f in (tmp_path / "raw").iterdir())
    # The consumer reads the listed files only, and refuses a foreign one.
    assert list_data_files(str(out / "train_data"), "runner.train_data_dir") == [str(out / "train_data" / "train.txt")]
    (out / "train_data" / "extra.txt").write_text("1,0,0,101:1\n")
    with pytest.raises(artifacts.ArtifactError, match="extra.txt"):
        list_data_files(str(out / "train_data"), "runner.train_data_dir")

    # Labels do not decide ids: flipped labels, same id space; other features, other widths or
    # PaddleRec's files: another one.
    write_raw(tmp_path / "flipped", skeleton_train=[(s, 1 - c, 0, k, p) for s, c, b, k, p in SKELETON_TRAIN])
    write_raw(tmp_path / "other", skeleton_train=[(s, c, b, k, p + [("207", 424242)]) for s, c, b, k, p in SKELETON_TRAIN])
    write_paddlerec(tmp_path / "paddlerec")
    found = {}
    for name, args in (("flipped", ["--raw", tmp_path / "flipped"]), ("other", ["--raw", tmp_path / "other"]),
                       ("columnar", ["--raw", tmp_path / "raw", "--format", "columnar", "--max-len", "109_14=3",
                                     "150_14=2", "853=2"]),
                       ("paddlerec", ["--paddlerec", tmp_path / "paddlerec"])):
        assert preprocess(*args, "--out", tmp_path / f"out-{name}") == 0
        found[name] = json.loads((tmp_path / f"out-{name}" / "meta.json").read_text())["id_space"]
        for folder in DATA_FOLDERS:
            assert read_manifest(tmp_path / f"out-{name}" / folder)["fingerprints"]["id_space"] == found[name]
    assert found.pop("flipped") == meta["id_space"]
    assert len({meta["id_space"], *found.values()}) == 4
    assert read_manifest(tmp_path / "out-paddlerec" / "train_data")["files"]["traindata_10w.csv"]["rows"] == 3
    assert read_manifest(tmp_path / "out-columnar" / "train_data")["files"]["train.txt"]["rows"] == 3  # header not counted


def test_second_run_from_another_source_is_refused_unless_replace(tmp_path, capsys):
    """The reported bug: two runs into one --out from two sources left both train.txt and
    traindata_10w.csv (two id spaces) and a stale meta.json, and ESMM trained on both."""
    write_raw(tmp_path / "raw")
    write_paddlerec(tmp_path / "paddlerec")
    out = tmp_path / "out"
    names = DATA_FOLDERS + ("meta.json", "sources.sha256")
    for first, second in (("paddlerec", "raw"), ("raw", "paddlerec")):
        if first == "paddlerec":  # run.sh, as in the report
            result = run(tmp_path / first, out)
            assert result.returncode == 0, result.stdout + result.stderr
        before = snapshot(out, names)

        if second == "raw":
            refused = run(tmp_path / second, out)
            status, stderr = refused.returncode, refused.stderr
        else:  # preprocess.py itself
            capsys.readouterr()
            status, stderr = preprocess("--paddlerec", tmp_path / second, "--out", out), capsys.readouterr().err
        assert status == 2, stderr
        errors = [line for line in stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and str(out / "train_data") in errors[0] and "--replace" in errors[0], stderr
        assert snapshot(out, names) == before

        if second == "raw":
            replaced = run_replacing(tmp_path / second, out)
            assert replaced.returncode == 0, replaced.stdout + replaced.stderr
        else:
            assert preprocess("--paddlerec", tmp_path / second, "--out", out, "--replace") == 0
        train, test = ("train.txt", "test.txt") if second == "raw" else ("traindata_10w.csv", "testdata_10w.csv")
        assert sorted(os.listdir(out / "train_data")) == ["manifest.json", train]  # nothing of the first run
        assert sorted(os.listdir(out / "test_data")) == ["manifest.json", test]
        meta = json.loads((out / "meta.json").read_text())
        assert meta["sparse_feature_number"] == (13 if second == "raw" else 737946)
        assert meta["id_space"] == read_manifest(out / "train_data")["fingerprints"]["id_space"] != \
            json.loads(before["meta.json"])["id_space"]
        assert sorted(meta["sources"]) == sorted(os.listdir(tmp_path / second))
        assert sorted(line.split()[1] for line in (out / "sources.sha256").read_text().splitlines()) == \
            sorted(meta["sources"])
        assert list_data_files(str(out / "train_data"), "runner.train_data_dir") == [str(out / "train_data" / train)]
        assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_killed_run_leaves_no_half_output_and_a_rerun_gives_the_same_bytes(tmp_path):
    # 30,000 training rows: long enough a conversion for some kills to land while it writes.
    many = [(str(10 + i), c, b, k, p) for i in range(10_000) for _, c, b, k, p in SKELETON_TRAIN]
    write_raw(tmp_path / "raw", skeleton_train=many)
    out = tmp_path / "out"
    command = ["bash", RUN_SH, "--raw", str(tmp_path / "raw"), "--out", str(out), "--replace"]
    kill_and_rerun(command, str(out), DATA_FOLDERS, "meta.json", seed=7)


def test_a_run_stopped_between_its_folders_leaves_no_meta_json_of_another_run(tmp_path, monkeypatch):
    """Stopped after publishing one folder (the moment a kill rarely hits): the earlier meta.json is
    already gone and the new one not yet written; the two folders' manifests tell the runs apart."""
    write_raw(tmp_path / "raw")
    write_paddlerec(tmp_path / "paddlerec")
    out = tmp_path / "out"
    assert preprocess("--raw", tmp_path / "raw", "--out", out) == 0
    first = read_manifest(out / "train_data")["fingerprints"]["id_space"]
    publish = artifacts.publish

    def publish_once(staging, destination):
        publish(staging, destination)
        raise KeyboardInterrupt  # stopped right after the first rename

    monkeypatch.setattr(artifacts, "publish", publish_once)
    with pytest.raises(KeyboardInterrupt):
        preprocess("--paddlerec", tmp_path / "paddlerec", "--out", out, "--replace")
    monkeypatch.setattr(artifacts, "publish", publish)
    assert not (out / "meta.json").exists() and not (out / "sources.sha256").exists()
    spaces = {name: read_manifest(out / name)["fingerprints"]["id_space"] for name in DATA_FOLDERS}
    assert spaces["train_data"] == first != spaces["test_data"]
    assert_whole_or_absent(str(out), DATA_FOLDERS, "meta.json")
    assert preprocess("--paddlerec", tmp_path / "paddlerec", "--out", out, "--replace") == 0
    assert sorted(os.listdir(out / "train_data")) == ["manifest.json", "traindata_10w.csv"]
    assert json.loads((out / "meta.json").read_text())["id_space"] == spaces["test_data"]

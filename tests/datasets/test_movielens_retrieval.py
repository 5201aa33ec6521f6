"""datasets/movielens: the leave-last-out retrieval preprocessing and run.sh (--raw, the
download path's checks) on generated data, and on the real ml-100k when it is present; how the
output is written (manifests, id_space, --replace, a run killed at random moments)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from datasets.movielens import preprocess_retrieval as pre
from models.common.artifacts import read_manifest
from models.common.data.cache import list_data_files
from models.common.loading import load_module

RUN = os.path.join(REPO, "datasets", "movielens", "run.sh")
SAMPLE = os.path.join(REPO, "datasets", "movielens", "sample")


def tables():
    ratings = pd.DataFrame({"user_id": [7, 7, 7, 7, 3, 9, 9], "item_id": [30, 10, 20, 40, 10, 20, 30],
                            "rating": [5] * 7, "timestamp": [4, 1, 2, 3, 5, 1, 1]})
    users = pd.DataFrame({"user_id": [3, 7, 9], "gender": ["M", "F", "M"], "age": [20, 30, 20],
                          "occupation": ["a", "b", "a"], "zip": ["1", "2", "3"]})
    items = pd.DataFrame({"item_id": [10, 20, 30, 40, 50], "title": list("abcde"), "year": [0] * 5,
                          "genres": [("Drama",), ("Action", "Drama"), (), ("Comedy",), ("Action",)]})
    return ratings, users, items


def test_leave_last_out_rows_by_hand():
    train, test, info = pre.build(*tables(), max_history=2)
    # Encoded: users 3->1, 7->2, 9->3; items 10..50 -> 1..5. User 7 in time order: 10, 20, 40, 30.
    # Columns: user, gender, age, occupation, zip, hist, hist, hist_length, item.
    assert train.tolist() == [
        [2, 1, 2, 2, 2, 1, 0, 1, 2],  # target 20, history [10]
        [2, 1, 2, 2, 2, 2, 1, 2, 4],  # target 40, history [20, 10] (most recent first)
    ]  # user 9 (20 then 30 at the same time: item id order) has only a test row; user 3 nothing
    assert test.tolist() == [[2, 1, 2, 2, 2, 4, 2, 2, 3],  # user 7's last item 30, history [40, 20]
                             [3, 2, 1, 1, 3, 2, 0, 1, 3]]  # user 3 (one rating) has no row
    assert info["vocab"] == {"user_id": 4, "item_id": 6, "gender": 3, "age": 3, "occupation": 3, "zip": 4, "genre": 4}
    assert info["item_genres"] == [[], [3], [1, 3], [], [2], [1]]  # Action=1, Comedy=2, Drama=3
    # Training interactions: everything but each user's last one (item 50 was never rated).
    assert info["item_count"] == [0, 2, 2, 0, 1, 0]
    assert info["item_raw_id"] == [0, 10, 20, 30, 40, 50] and info["user_raw_id"] == [0, 3, 7, 9]


def bash(*args, env=None, cwd=None):
    return subprocess.run(["bash", RUN, *args], capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                          cwd=cwd)


def sample_raw(folder):
    """The shipped sample's synthetic raw files (ml-100k layout), written by its make_sample.py."""
    return load_module(os.path.join(SAMPLE, "make_sample.py")).write_raw(str(folder))


STEP_FOLDERS = {"retrieval": ["train", "test"], "metaemb": ["pretrain", "meta", "warm", "test"],
                "pretrained": ["train", "valid", "vectors", "interactions"], "ranking": ["train", "valid"]}
SIDE_FILES = {"retrieval": "dataset.json", "metaemb": "meta.json", "ranking": "ranking.json"}


def check_step(folder, step):
    """A step folder as run.sh writes it: its manifest lists every file (rows where they count), each
    data folder's manifest lists its files and reads through list_data_files, and one id_space is in
    all of them and in the JSON side file. -> the id_space."""
    top = read_manifest(str(folder))
    space = top["fingerprints"]["id_space"]
    assert top["data_set"] == "movielens" and top["kind"].startswith("movielens") and len(space) == 16
    listed = {os.path.relpath(os.path.join(root, n), folder) for root, _, names in os.walk(folder)
              for n in names if n != "manifest.json"}
    assert set(top["files"]) == listed
    for sub in STEP_FOLDERS[step]:
        manifest = read_manifest(str(folder / sub))
        assert manifest["fingerprints"] == {"id_space": space} and manifest["data_set"] == "movielens"
        assert list_data_files(str(folder / sub), sub) == sorted(str(folder / sub / n) for n in manifest["files"])
        for name, info in manifest["files"].items():
            assert info["bytes"] == os.path.getsize(folder / sub / name) and "rows" in info
            assert top["files"][f"{sub}/{name}"] == info
    if step in SIDE_FILES:
        assert json.loads((folder / SIDE_FILES[step]).read_text())["id_space"] == space
    return space


def test_run_sh_raw_reproduces_the_shipped_sample(tmp_path):
    """... from a --raw path with quotes in it: the path is an argument, never pasted into code."""
    raw_dir = tmp_path / """r'+__import__("os").system("touch PWNED")+' \"x"""
    done = bash("--raw", sample_raw(raw_dir), "--out", str(tmp_path / "out"), "--max-history", "20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "PWNED").exists()
    for part in ("train/train.txt", "test/test.txt"):
        with open(tmp_path / "out" / "retrieval" / part, "rb") as a, open(os.path.join(SAMPLE, part), "rb") as b:
            assert a.read() == b.read(), part
    with open(tmp_path / "out" / "retrieval" / "dataset.json") as a, open(os.path.join(SAMPLE, "dataset.json")) as b:
        ours, shipped = json.load(a), json.load(b)
    assert "id_space" not in shipped and ours.pop("id_space") == read_manifest(
        str(tmp_path / "out" / "retrieval"))["fingerprints"]["id_space"]
    assert ours == shipped
    spaces = {step: check_step(tmp_path / "out" / step, step) for step in STEP_FOLDERS}
    assert len(set(spaces.values())) == len(STEP_FOLDERS)  # one id space per step
    assert sorted(os.listdir(tmp_path / "out")) == sorted(STEP_FOLDERS)  # nothing left beside them


def test_sample_is_what_make_sample_writes(tmp_path):
    module = load_module(os.path.join(SAMPLE, "make_sample.py"))
    module.HERE = str(tmp_path)
    module.main([])
    assert sorted(os.listdir(tmp_path)) == ["dataset.json", "test", "train"]  # no manifest: as shipped
    for part in ("train/train.txt", "test/test.txt", "dataset.json"):
        assert (tmp_path / part).read_bytes() == open(os.path.join(SAMPLE, part), "rb").read(), part


def test_manifests_rows_and_id_space(tmp_path):
    raw_dir = sample_raw(tmp_path / "raw")
    pre.main(["--raw", raw_dir, "--out", str(tmp_path / "a"), "--max-history", "20"])
    space = check_step(tmp_path / "a", "retrieval")
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    top = read_manifest(str(tmp_path / "a"))
    assert top["files"]["train/train.txt"]["rows"] == info["rows"]["train"] == 4340
    assert top["files"]["test/test.txt"]["rows"] == info["rows"]["test"] == 250
    assert len((tmp_path / "a" / "train" / "train.txt").read_text().splitlines()) == 4340
    assert "--max-history" in top["command"] and top["kind"] == "movielens retrieval rows (leave-last-out)"
    # the same input and options: the same id space (and bytes); another encoding: another one
    pre.main(["--raw", raw_dir, "--out", str(tmp_path / "b"), "--max-history", "20"])
    assert check_step(tmp_path / "b", "retrieval") == space
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    pre.main(["--raw", raw_dir, "--out", str(tmp_path / "c"), "--max-history", "5"])
    assert check_step(tmp_path / "c", "retrieval") != space


def files_of(folder):
    """{relative path: bytes} of every file under ``folder`` (hidden ones too); a manifest without
    the two fields that name the run (when, with which command)."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                data = f.read()
            if name == "manifest.json":
                data = {k: v for k, v in json.loads(data).items() if k not in ("created", "command")}
            files[os.path.relpath(path, folder)] = data
    return files


def raw_bytes(folder):
    return {os.path.relpath(os.path.join(r, n), folder): open(os.path.join(r, n), "rb").read()
            for r, _, names in os.walk(folder) for n in names}


def test_second_run_is_refused_and_replace_leaves_nothing_of_the_first(tmp_path, capsys):
    raw_dir = sample_raw(tmp_path / "raw")
    out = tmp_path / "out" / "retrieval"
    pre.main(["--raw", raw_dir, "--out", str(out), "--max-history", "20"])
    first = raw_bytes(out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        pre.main(["--raw", raw_dir, "--out", str(out), "--max-history", "5"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert str(out) in err and "--replace" in err
    assert raw_bytes(out) == first and os.listdir(tmp_path / "out") == ["retrieval"]
    # run.sh refuses before it writes anything (exit status 2, one line naming the folder)
    done = bash("--raw", raw_dir, "--out", str(tmp_path / "out"), "--steps", "retrieval")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"run.sh: {out} already holds files; choose another --out, or --replace to replace them"]
    assert raw_bytes(out) == first
    # --replace: the new folder replaces the old one whole (a stray file of the old one included)
    (out / "train" / "train.txt.tmp").write_text("user_id:1\n")
    pre.main(["--raw", raw_dir, "--out", str(out), "--max-history", "5", "--replace"])
    second = raw_bytes(out)
    assert not set(second.items()) & set(first.items())  # no file of the first run, not even equal bytes
    assert set(second) == {"manifest.json", "dataset.json", "train/train.txt", "train/manifest.json",
                           "test/test.txt", "test/manifest.json"}
    assert check_step(out, "retrieval") != json.loads(first["dataset.json"])["id_space"]
    assert os.listdir(tmp_path / "out") == ["retrieval"]  # no staging or old folder left


def test_one_run_at_a_time_writes_into_out(tmp_path, capsys):
    import fcntl

    raw_dir = sample_raw(tmp_path / "raw")
    (tmp_path / "out").mkdir()
    held = os.open(tmp_path / "out", os.O_RDONLY)  # another run, writing into out
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SystemExit) as exit_:
            pre.main(["--raw", raw_dir, "--out", str(tmp_path / "out" / "retrieval")])
    finally:
        os.close(held)
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'out'} is being written by another run; wait for it, or choose another --out"]
    assert os.listdir(tmp_path / "out") == []


def test_run_sh_rejects_bad_arguments(tmp_path):
    assert bash("--raw", str(tmp_path / "missing")).returncode == 2
    assert bash("--dataset", "ml-20m").returncode == 2
    for args in (["--dataset"], ["--out"], ["--max-history", "0"], ["--max-history", "x"], ["--steps", " "],
                 ["--steps", "retrieval nonsense"], ["--raw"], ["--nonsense"]):
        done = bash(*args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
    (tmp_path / "empty").mkdir()
    done = bash("--raw", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "u.data" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_run_sh_names_a_bad_raw_line_in_one_line(tmp_path):
    raw_dir = sample_raw(tmp_path / "raw")
    lines = open(os.path.join(raw_dir, "u.data")).read().splitlines()
    lines[2] = "1\t2\tfive\t880000000"
    open(os.path.join(raw_dir, "u.data"), "w").write("\n".join(lines) + "\n")
    done = bash("--raw", raw_dir, "--out", str(tmp_path / "out"), "--steps", "retrieval")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {raw_dir}/u.data, line 3: rating 'five' is not an integer"]
    assert os.listdir(tmp_path / "out") == []  # nothing written, no staging folder left


# A run killed at random moments. Every Python process of the run loads this (PYTHONPATH): it counts
# what the process writes under $KILL_OUT (audit events: files opened for writing, folders made or
# removed, renames) and kills the whole run (kill -9 of its process group) at event $KILL_AT, or - with
# $KILL_PARTIAL - as soon as that file has its first bytes on disk.
KILLER = """
import os, signal, sys, threading, time
OUT = os.environ.get("KILL_OUT")
if OUT:
    AT, LOG, PARTIAL = int(os.environ.get("KILL_AT", "0")), os.environ.get("KILL_LOG"), os.environ.get("KILL_PARTIAL")
    count = [0]

    def watch(path):
        while True:
            if os.path.exists(path) and os.path.getsize(path) > 0:
                os.killpg(0, signal.SIGKILL)
            time.sleep(0.0005)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if not (set(mode or "") & set("wax+") or (mode is None and flags & (os.O_WRONLY | os.O_RDWR))):
                return
        elif event in ("os.mkdir", "os.rmdir", "os.remove", "os.rename", "shutil.rmtree"):
            path = args[0]
        else:
            return
        if not isinstance(path, str) or not os.path.abspath(path).startswith(OUT + os.sep):
            return
        count[0] += 1
        if LOG:
            with open(LOG, "a") as f:
                f.write(f"{event} {path}{' -> ' + args[1] if event == 'os.rename' else ''}\\n")
        if PARTIAL and event == "open" and os.path.basename(path) == PARTIAL:
            threading.Thread(target=watch, args=(os.path.abspath(path),), daemon=True).start()
        if count[0] == AT:
            os.killpg(0, signal.SIGKILL)

    sys.addaudithook(hook)
"""


def test_run_sh_killed_at_random_moments_leaves_a_whole_output(tmp_path):
    """kill -9 of run.sh at seeded random moments of its writing, alternating two inputs: after every
    kill, OUT/retrieval is absent or one whole earlier or new output (every data folder read through
    its manifest, one id_space, the bytes of an uninterrupted run); rerun with --replace, the result is
    byte for byte an uninterrupted run's."""
    raws = {"A": sample_raw(tmp_path / "rawA")}
    raws["B"] = str(tmp_path / "rawB")
    shutil.copytree(raws["A"], raws["B"])
    lines = open(os.path.join(raws["B"], "u.data")).read().splitlines()
    open(os.path.join(raws["B"], "u.data"), "w").write("\n".join(lines[:-300]) + "\n")  # fewer ratings
    (tmp_path / "killer").mkdir()
    (tmp_path / "killer" / "sitecustomize.py").write_text(KILLER)

    def run(raw, out, **kill):
        env = {"PYTHON": sys.executable, "KILL_OUT": str(out),
               "PYTHONPATH": os.pathsep.join([str(tmp_path / "killer"), os.environ.get("PYTHONPATH", "")]),
               **{f"KILL_{k.upper()}": str(v) for k, v in kill.items()}}
        return subprocess.run(["bash", RUN, "--raw", raws[raw], "--out", str(out), "--steps", "retrieval",
                               "--max-history", "20", "--replace"], capture_output=True, text=True,
                              env=dict(os.environ, **env), start_new_session=True, timeout=300)

    # Uninterrupted runs: A; B replacing a copy of A (its writes logged: the moments to kill at).
    assert run("A", tmp_path / "refA").returncode == 0
    shutil.copytree(tmp_path / "refA" / "retrieval", tmp_path / "refB" / "retrieval")
    done = run("B", tmp_path / "refB", log=tmp_path / "events")
    assert done.returncode == 0, done.stderr
    space_of = {k: check_step(tmp_path / f"ref{k}" / "retrieval", "retrieval") for k in "AB"}
    reference = {space_of[k]: files_of(tmp_path / f"ref{k}" / "retrieval") for k in "AB"}
    assert len(reference) == 2
    events = (tmp_path / "events").read_text().splitlines()
    publish = next(i for i, e in enumerate(events, 1)  # the staging folder renamed into place
                   if e.startswith("os.rename") and os.path.basename(e.split()[1]).startswith(".retrieval.staging-"))
    # train.txt half-written; a seeded random moment in each half of the writes; last, the moment the
    # old folder has been moved aside and the new one is not yet renamed into place.
    rng, half = np.random.default_rng(1234), len(events) // 2
    moments = [{"partial": "train.txt"}, {"at": int(rng.integers(1, half + 1))},
               {"at": int(rng.integers(half + 1, len(events) + 1))}, {"at": publish}]
    out = tmp_path / "out"
    shutil.copytree(tmp_path / "refA" / "retrieval", out / "retrieval")
    previous = space_of["A"]
    for n, moment in enumerate(moments):
        raw = "BA"[n % 2]
        done = run(raw, out, **moment)
        assert done.returncode in (0, -9), done.stderr
        if not (out / "retrieval").exists():  # killed between moving the old folder aside and renaming the new in
            with pytest.raises(FileNotFoundError):
                list_data_files(str(out / "retrieval" / "train"), "runner.train_data_dir")
            previous = None
            continue
        space = check_step(out / "retrieval", "retrieval")  # every data folder: a complete manifest
        assert space in {previous, space_of[raw]} and files_of(out / "retrieval") == reference[space]
        previous = space
    done = run("B", out)
    assert done.returncode == 0, done.stderr
    assert files_of(out / "retrieval") == files_of(tmp_path / "refB" / "retrieval")
    assert os.listdir(out) == ["retrieval"]  # what the killed runs left beside it is gone


def test_run_sh_checks_the_archive_before_unpacking(tmp_path):
    downloads = tmp_path / "dl"
    downloads.mkdir()
    archive = downloads / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("u.data", "u.user", "u.item"):
            z.write(os.path.join(sample_raw(tmp_path / "raw"), name), f"ml-100k/{name}")
    done = bash("--dataset", "ml-100k", "--out", str(tmp_path / "out"), env={"MOVIELENS_DOWNLOADS": str(downloads)})
    assert done.returncode == 4 and "expected 4924029" in done.stderr  # not the official archive
    assert not (downloads / "ml-100k").exists()
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    done = bash("--dataset", "ml-100k", "--out", str(tmp_path / "out"),
                env={"MOVIELENS_DOWNLOADS": str(downloads), "MOVIELENS_MD5": "0" * 32})
    assert done.returncode == 4 and "checksum mismatch" in done.stderr
    done = bash("--dataset", "ml-100k", "--out", str(tmp_path / "out"), "--max-history", "20",
                env={"MOVIELENS_DOWNLOADS": str(downloads), "MOVIELENS_MD5": md5})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "retrieval" / "train" / "train.txt").read_bytes() == \
        open(os.path.join(SAMPLE, "train", "train.txt"), "rb").read()


def test_real_ml100k(shared_data, tmp_path):
    raw_dir = os.path.join(shared_data, "ml-100k")
    if not os.path.isfile(os.path.join(raw_dir, "u.data")):
        pytest.skip("ml-100k not present")
    pre.main(["--raw", raw_dir, "--out", str(tmp_path)])
    with open(tmp_path / "dataset.json") as f:
        info = json.load(f)
    # 943 users (each >= 20 ratings): 100,000 - 943 test - 943 first items = 98,114 training rows.
    assert info["rows"] == {"train": 98114, "test": 943}
    assert info["vocab"]["item_id"] == 1683 and info["vocab"]["user_id"] == 944
    test = np.loadtxt(tmp_path / "test" / "test.txt", dtype=str)
    ratings = pd.read_csv(os.path.join(raw_dir, "u.data"), sep="\t", names=["u", "i", "r", "t"])
    last = ratings.sort_values(["u", "t", "i"]).groupby("u").tail(1).set_index("u")["i"]
    items = np.array([int(t.split(":")[1]) for t in test[:, -1]])
    raw_items = np.array(info["item_raw_id"])[items]
    assert (raw_items == last.loc[np.array(info["user_raw_id"])[[int(t.split(":")[1]) for t in test[:, 0]]]].to_numpy()).all()

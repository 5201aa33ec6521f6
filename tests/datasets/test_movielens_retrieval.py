"""datasets/movielens: the leave-last-out retrieval preprocessing and run.sh (--raw, the
download path's checks) on generated data, and on the real ml-100k when it is present."""
import hashlib
import json
import os
import subprocess
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from datasets.movielens import preprocess_retrieval as pre
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


def bash(*args, env=None):
    return subprocess.run(["bash", RUN, *args], capture_output=True, text=True, env=dict(os.environ, **(env or {})))


def sample_raw(folder):
    """The shipped sample's synthetic raw files (ml-100k layout), written by its make_sample.py."""
    return load_module(os.path.join(SAMPLE, "make_sample.py")).write_raw(str(folder))


def test_run_sh_raw_reproduces_the_shipped_sample(tmp_path):
    done = bash("--raw", sample_raw(tmp_path / "raw"), "--out", str(tmp_path), "--max-history", "20")
    assert done.returncode == 0, done.stderr
    for part in ("train/train.txt", "test/test.txt"):
        with open(tmp_path / "retrieval" / part, "rb") as a, open(os.path.join(SAMPLE, part), "rb") as b:
            assert a.read() == b.read(), part
    with open(tmp_path / "retrieval" / "dataset.json") as a, open(os.path.join(SAMPLE, "dataset.json")) as b:
        assert json.load(a) == json.load(b)


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


def test_run_sh_rejects_bad_arguments(tmp_path):
    assert bash("--raw", str(tmp_path / "missing")).returncode == 2
    assert bash("--dataset", "ml-20m").returncode == 2
    (tmp_path / "empty").mkdir()
    done = bash("--raw", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and "u.data" in done.stderr


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

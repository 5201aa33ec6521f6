"""datasets/movielens/preprocess_ranking.py on the real MovieLens-100K: the ranker's rows are the
retrieval training split plus negatives, nothing of the test split; deterministic; a retrieval
folder of another raw copy is refused; MetaEmb's base trains on a subsample of them."""
import io
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from datasets.movielens import preprocess_ranking, preprocess_retrieval
from models.common.artifacts import read_manifest
from tests.conftest import run_tool

CONFIG = os.path.join("models", "rank", "metaemb", "config_ml100k_rank.yaml")


def slot_matrix(path):
    """A retrieval slot file as an int matrix (names stripped)."""
    with open(path, encoding="utf-8") as f:
        return pd.read_csv(io.StringIO(re.sub(r"[a-z_]+:", "", f.read())), sep=" ", header=None).to_numpy(np.int64)


def keys(users, items):
    return np.asarray(users, np.int64) * 100_000 + np.asarray(items, np.int64)


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    from tests.conftest import SHARED_DATA
    raw_dir = os.path.join(SHARED_DATA, "ml-100k")
    if not os.path.isfile(os.path.join(raw_dir, "u.data")):
        pytest.skip("../shared/data/ml-100k is not present")
    out = tmp_path_factory.mktemp("ml100k")
    preprocess_retrieval.main(["--raw", raw_dir, "--out", str(out / "retrieval")])
    preprocess_ranking.main(["--raw", raw_dir, "--retrieval", str(out / "retrieval"), "--out", str(out / "ranking")])
    return raw_dir, out


def test_rows_are_the_retrieval_training_split_plus_negatives(shared_data, ml100k):
    _, out = ml100k
    info = json.loads((out / "retrieval" / "dataset.json").read_text())
    user_raw, item_raw = np.array(info["user_raw_id"]), np.array(info["item_raw_id"])
    train, test = (slot_matrix(out / "retrieval" / f / f"{f}.txt") for f in ("train", "test"))
    # In raw ids, as the ranking rows: (user, positive item) of each row; its history items too.
    positives = keys(user_raw[train[:, 0]], item_raw[train[:, -1]])
    history = train[:, 5:5 + info["max_history"]]
    seen = np.concatenate([positives, keys(user_raw[np.repeat(train[:, 0], history.shape[1])],
                                           item_raw[history.reshape(-1)])[history.reshape(-1) > 0]])
    held_out = keys(user_raw[test[:, 0]], item_raw[test[:, -1]])
    rows = {}
    for name in ("train", "valid"):
        with np.load(out / "ranking" / name / f"{name}.npz") as data:
            rows[name] = {c: data[c] for c in data.files}
    label = np.concatenate([r["label"] for r in rows.values()])
    row_keys = np.concatenate([keys(r["user_id"], r["item_id"]) for r in rows.values()])
    assert not np.isin(row_keys[label == 1], held_out).any()  # no held-out pair is a positive
    assert len(np.unique(positives)) == len(positives) == 98114
    assert np.array_equal(np.sort(row_keys[label == 1]), np.sort(positives))  # each positive exactly once
    negatives = row_keys[label == 0]
    assert len(negatives) == 4 * len(positives) and set(np.unique(label)) == {0, 1}
    assert not np.isin(negatives, seen).any()  # items the user has no training interaction with
    assert set(np.unique(rows["valid"]["user_id"])) <= set(np.unique(rows["train"]["user_id"]))
    assert 0.04 < len(rows["valid"]["label"]) / len(label) < 0.06
    # one id space in every manifest and ranking.json; rows as the manifests say
    stats = json.loads((out / "ranking" / "ranking.json").read_text())
    space = read_manifest(str(out / "ranking"))["fingerprints"]["id_space"]
    assert stats["id_space"] == space and stats["rows"] == {n: len(r["label"]) for n, r in rows.items()}
    for name in rows:
        manifest = read_manifest(str(out / "ranking" / name))
        assert manifest["fingerprints"] == {"id_space": space}
        assert manifest["files"][f"{name}.npz"]["rows"] == len(rows[name]["label"])


def test_rerun_is_byte_identical(shared_data, ml100k, tmp_path):
    raw_dir, out = ml100k
    preprocess_ranking.main(["--raw", raw_dir, "--retrieval", str(out / "retrieval"), "--out", str(tmp_path / "again")])
    for name in ("train/train.npz", "valid/valid.npz", "ranking.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / "ranking" / name).read_bytes(), name


def refused(capsys, *args):
    """Runs preprocess_ranking with ``args``: exit status 2 and one error line, which is returned."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        preprocess_ranking.main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    return err[0]


def test_bad_retrieval_folder_is_refused(shared_data, ml100k, tmp_path, capsys):
    raw_dir, out = ml100k
    # a retrieval folder written from another raw copy (one rating fewer): another id space
    other = tmp_path / "other-raw"
    other.mkdir()
    for name in ("u.user", "u.item"):
        shutil.copy(os.path.join(raw_dir, name), other / name)
    with open(os.path.join(raw_dir, "u.data")) as f:
        (other / "u.data").write_text("".join(f.readlines()[:-1]))
    preprocess_retrieval.main(["--raw", str(other), "--out", str(tmp_path / "retrieval")])
    err = refused(capsys, "--raw", raw_dir, "--retrieval", str(tmp_path / "retrieval"), "--out", str(tmp_path / "r"))
    assert str(tmp_path / "retrieval" / "manifest.json") in err and "another raw copy" in err
    # a missing folder, a missing training file: named
    err = refused(capsys, "--raw", raw_dir, "--retrieval", str(tmp_path / "none"), "--out", str(tmp_path / "r"))
    assert str(tmp_path / "none" / "manifest.json") in err
    shutil.copytree(out / "retrieval", tmp_path / "broken")
    os.remove(tmp_path / "broken" / "train" / "train.txt")
    err = refused(capsys, "--raw", raw_dir, "--retrieval", str(tmp_path / "broken"), "--out", str(tmp_path / "r"))
    assert str(tmp_path / "broken" / "train" / "train.txt") in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_metaemb_base_trains_on_a_subsample(shared_data, ml100k, tmp_path):
    """One epoch of config_ml100k_rank.yaml on 60,000 training rows: it runs and ranks the
    validation rows clearly better than chance."""
    _, out = ml100k
    for name, n in (("train", 60_000), ("valid", 10_000)):
        (tmp_path / name).mkdir()
        with np.load(out / "ranking" / name / f"{name}.npz") as data:
            np.savez(tmp_path / name / f"{name}.npz", **{c: data[c][:n] for c in data.files})
    done = run_tool("tools/trainer.py", "-m", CONFIG, "-o", "runner.epochs=1",
                    f"runner.train_data_dir={tmp_path / 'train'}", f"runner.valid_data_dir={tmp_path / 'valid'}",
                    f"runner.model_save_path={tmp_path / 'ckpt'}", timeout=120)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "ckpt" / "metrics.json").read_text())
    assert metrics["train"][0]["valid_auc"] > 0.6, metrics["train"][0]
    assert (tmp_path / "ckpt" / "0" / "rec.pdparams").exists()

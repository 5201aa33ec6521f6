"""Pretrained-vector two-tower model: rows of numbers (text and .npy) through the cache, the
MovieLens vector builder, scores, and a whole train run with early stopping on the sample."""
import json
import os
import sys

import numpy as np
import paddle
import pandas as pd
import pytest

from models.common.data import CachedDataset, DataFormatError, NumberRowsParser
from models.common.features import DenseFeature, Label, Schema
from tests.conftest import REPO, run_tool

FOLDER = os.path.join(REPO, "models", "recall", "pretrained_dssm")
CONFIG = os.path.join(FOLDER, "config.yaml")
sys.path.insert(0, FOLDER)
from net import PretrainedTwoTower  # noqa: E402

from datasets.movielens import make_pretrained_vectors as mpv  # noqa: E402

SCHEMA = Schema([Label("label"), DenseFeature("user_vector", 2), DenseFeature("item_vector", 2)])


class _Config:
    def __init__(self, **values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


def read(tmp_path, text=None, array=None, skip=False):
    folder = tmp_path / "d"
    folder.mkdir(exist_ok=True)
    path = folder / ("rows.npy" if array is not None else "rows.txt")
    if array is not None:
        np.save(path, array)
    else:
        path.write_text(text)
    dataset = CachedDataset([str(path)], _Config(**{"runner.skip_bad_lines": skip}), SCHEMA, NumberRowsParser())
    return dataset, str(path)


def test_text_and_npy_rows_read_the_same(tmp_path):
    rows = np.array([[1, 0.5, -1, 2, 3], [0, 1e-3, 4, 5.5, -6]], dtype=np.float32)
    text, _ = read(tmp_path, "1,0.5,-1,2,3\r\n\n0, 0.001,4,5.5,-6\n")
    npy, _ = read(tmp_path, array=rows)
    for dataset in (text, npy):
        batch = dataset.take([0, 1])
        assert batch["label"].tolist() == [1, 0]
        np.testing.assert_allclose(batch["user_vector"], rows[:, 1:3])
        np.testing.assert_allclose(batch["item_vector"], rows[:, 3:5])


@pytest.mark.parametrize("line, message", [
    ("1,0.5,-1,2", "line 2: expected 5 values separated by ',', found 4"),
    ("1,0.5,-1,2,3,4", "line 2: expected 5 values separated by ',', found 6"),
    ("1,0.5,abc,2,3", "line 2: field 3 (user_vector[1]) has value 'abc', expected a number"),
    ("1,0.5,nan,2,3", "line 2: user_vector has value nan, expected a finite number"),
    ("1,0.5,1,inf,3", "line 2: item_vector has value inf, expected a finite number"),
    ("2,0.5,1,2,3", "line 2: label label has value 2, expected one of [0, 1]"),
])
def test_bad_row_names_file_and_line(tmp_path, line, message):
    with pytest.raises(DataFormatError) as error:
        read(tmp_path, f"0,1,2,3,4\n{line}\n1,1,1,1,1\n")
    assert "rows.txt" in str(error.value) and message in str(error.value)
    dataset, _ = read(tmp_path, f"0,1,2,3,4\n{line}\n1,1,1,1,1\n", skip=True)
    assert len(dataset) == 2 and dataset.skipped_lines == 1
    assert dataset.take([1])["label"].tolist() == [1]


def test_bad_npy_shard(tmp_path):
    with pytest.raises(DataFormatError, match="expected a 2-D numeric array with 5 columns"):
        read(tmp_path, array=np.zeros((3, 4), np.float32))
    with pytest.raises(DataFormatError, match="row 2: label label has value 3"):
        read(tmp_path, array=np.array([[0, 1, 2, 3, 4], [3, 1, 2, 3, 4]], np.float32))


def test_vectors_hold_out_the_last_items_and_leave_the_own_item_out(tmp_path):
    ratings = pd.DataFrame({"user_id": [1, 1, 1, 1, 2, 2], "item_id": [10, 20, 30, 40, 10, 30],
                            "timestamp": [4, 1, 2, 3, 1, 2]})
    train, valid, test = mpv.split_by_time(ratings)
    assert train.values.tolist() == [[1, 20], [1, 30], [2, 10], [2, 30]]  # user 2 has < 3 interactions
    assert valid.values.tolist() == [[1, 40]] and test.values.tolist() == [[1, 10]]
    item_vec = np.array([[1, 0], [0, 1], [1, 1], [2, 2], [3, 0]], np.float32)  # items 10, 20, 30, 40, 50
    mpv.write_dataset(str(tmp_path), train, valid, test, [1, 2], [10, 20, 30, 40, 50], item_vec, 1, 0, "npy")
    users = np.load(tmp_path / "vectors" / "users.npy")
    np.testing.assert_allclose(users, [[0.5, 1.0], [1.0, 0.5]])  # means of the training items only
    rows = np.load(tmp_path / "train" / "part-0.npy")
    positives = rows[rows[:, 0] == 1]
    # user 1's positive item 20 ([0, 1]) is seen with the mean of its other item (30: [1, 1]), etc.
    pairs = {tuple(r[3:]): tuple(r[1:3]) for r in positives}
    assert pairs[(0.0, 1.0)] == (1.0, 1.0) and pairs[(1.0, 1.0)] in {(0.0, 1.0), (1.0, 0.0)}
    negatives = rows[rows[:, 0] == 0]
    assert len(negatives) == len(positives)
    # negatives are never items the user interacted with (user 1: only 50; user 2: 20, 40 or 50)
    for r in negatives:
        allowed = {(3.0, 0.0)} if tuple(r[1:3]) == (0.5, 1.0) else {(0.0, 1.0), (2.0, 2.0), (3.0, 0.0)}
        assert tuple(r[3:]) in allowed


def test_vectors_from_complete_ml100k(shared_data, tmp_path):
    from datasets.movielens import raw

    ratings, _, _ = raw.load(os.path.join(shared_data, "ml-100k"))
    train, valid, test = mpv.split_by_time(ratings)
    assert (len(train), len(valid), len(test)) == (98114, 943, 943)
    vectors = mpv.ppmi_svd_vectors(train, np.arange(1, 1683), 32)
    # items that co-occur more are closer: an item's nearest neighbours share its users
    norms = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    assert np.isfinite(vectors).all() and (np.linalg.norm(vectors, axis=1) > 0).mean() > 0.95
    assert (norms[:50] @ norms.T).argsort(axis=1)[:, -2].tolist() != list(range(50))


@pytest.mark.parametrize("score", ["product", "dot", "cosine"])
def test_score_is_a_function_of_query_key_inner_product(score):
    paddle.seed(0)
    model = PretrainedTwoTower(6, [5], score=score, temperature=0.5)
    users, items = paddle.randn([4, 6]), paddle.randn([4, 6])
    u, i = model.user_tower(users), model.item_tower(items)
    expected = paddle.nn.functional.sigmoid(model.logit_of(paddle.sum(model.query(u) * model.key(i), axis=-1)))
    got = model({"user_vector": users, "item_vector": items})
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)
    if score == "product":  # w . (u * i) + b
        manual = (u * i).numpy() @ model.output.weight.numpy()[:, 0] + model.output.bias.numpy()
        np.testing.assert_allclose(got.numpy(), 1 / (1 + np.exp(-manual)), rtol=1e-5)
    if score == "cosine":
        cos = (u * i).sum(-1) / (paddle.linalg.norm(u, axis=-1) * paddle.linalg.norm(i, axis=-1))
        np.testing.assert_allclose(got.numpy(), 1 / (1 + np.exp(-cos.numpy() / 0.5)), rtol=1e-5)


def test_trains_on_the_sample_with_early_stopping(tmp_path):
    out = tmp_path / "ckpt"
    result = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={out}")
    assert result.returncode == 0, result.stderr
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    history, best = metrics["train"], metrics["early_stopping"]["best_epoch"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[best]["valid_auc"] > 0.7  # the sample's hidden taste is learnable
    assert len(history) < 30 and os.path.isdir(out / "best")  # stopped early
    result = run_tool("tools/infer.py", "-m", CONFIG, "-o", f"runner.model_save_path={out}")
    assert result.returncode == 0, result.stderr
    assert f"evaluating epoch(s) [{best}]" in result.stdout
    with open(out / "infer" / "metrics.json") as f:
        assert abs(json.load(f)["headline"]["auc"] - history[best]["valid_auc"]) < 1e-9  # same data, same code

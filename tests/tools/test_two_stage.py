"""Recall then rank on the real MovieLens-100K (../shared/data; skipped without it): the README's
one command (examples/recall_then_rank.sh) runs from raw data to the two-stage figures, and the
service's two-stage list is the recalled candidates ordered by the trained ranker's own scores,
each candidate with the features of its item as the ranker's training rows hold them."""
import json
import os
import subprocess

import numpy as np
import paddle
import pytest

from conftest import REPO, SHARED_DATA
from models.common.serving import LoadedExport, recommend
from tools.utils.checkpoint import best_epoch, load_checkpoint
from tools.utils.runtime import load_model

RAW = os.path.join(SHARED_DATA, "ml-100k")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    if not os.path.isfile(os.path.join(RAW, "u.data")):
        pytest.skip("../shared/data/ml-100k is not present")
    tmp = tmp_path_factory.mktemp("two_stage")
    done = subprocess.run(["bash", os.path.join(REPO, "examples", "recall_then_rank.sh"), "--raw", RAW,
                           "--data", str(tmp / "data"), "--out", str(tmp / "out"), "--rank-epochs", "1"],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return tmp, done.stdout


def test_the_example_reports_both_lists(pipeline):
    tmp, stdout = pipeline
    with open(tmp / "out" / "two_stage.json") as f:
        values = json.load(f)
    assert values["users"] == 943 and values["candidates"] == 100 and values["k"] == 10
    for key in ("recall_hit@10", "recall_ndcg@10", "two_stage_hit@10", "two_stage_ndcg@10"):
        assert 0 < values[key] <= values["recall_hit@100"] < 1, key
        assert f"{values[key]:.4f}" in stdout
    assert values["recall_ndcg@10"] <= values["recall_hit@10"] and values["two_stage_ndcg@10"] <= values["two_stage_hit@10"]
    # the retrieval model learned: far above what 10 random items of 1682 would hit
    assert values["recall_hit@10"] > 5 * 10 / 1682


def test_two_stage_list_is_the_candidates_in_the_rankers_order(pipeline):
    tmp, _ = pipeline
    retrieval = LoadedExport(str(tmp / "out" / "export" / "dssm"))
    ranker = LoadedExport(str(tmp / "out" / "export" / "ranker"))
    config, dm = load_model(os.path.join(REPO, "models", "rank", "metaemb", "config_ml100k_rank.yaml"),
                            [f"runner.train_data_dir={tmp / 'data' / 'ranking' / 'train'}",
                             f"runner.valid_data_dir={tmp / 'data' / 'ranking' / 'valid'}"])
    model = dm.create_model(config)
    load_checkpoint(str(tmp / "out" / "ranker"), best_epoch(str(tmp / "out" / "ranker")) or 0, model)
    model.eval()
    with np.load(tmp / "data" / "ranking" / "train" / "train.npz") as data:
        rows = {c: data[c] for c in data.files}
    info = json.loads((tmp / "data" / "retrieval" / "dataset.json").read_text())
    features = retrieval.schema()["graphs"]["user_tower"]["features"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        user = {n: (rng.integers(1, 1683, 7).tolist() if spec["kind"] == "sequence"
                    else int(rng.integers(1, min(spec["vocab_size"], 944)))) for n, spec in features.items()}
        answer = recommend(retrieval, ranker, user, k=10, candidates=50)
        candidates, _ = retrieval.recall(user, 50)
        raw_candidates = np.asarray(info["item_raw_id"])[candidates]
        raw_user = info["user_raw_id"][user["user_id"]]
        # each candidate's features from a training row of its item, the user's from one of theirs
        item_row = [int(np.flatnonzero(rows["item_id"] == i)[0]) for i in raw_candidates]
        user_row = int(np.flatnonzero(rows["user_id"] == raw_user)[0])
        batch = {c: rows[c][item_row] for c in ("item_id", "year", "title", "title_length", "genres", "genres_length")}
        batch.update({c: np.repeat(rows[c][[user_row]], len(item_row), axis=0)
                      for c in ("user_id", "age", "gender", "occupation")})
        with paddle.no_grad():
            scores = model({c: paddle.to_tensor(v.astype(np.int64)) for c, v in batch.items()}).numpy().reshape(-1)
        order = np.argsort(-scores, kind="stable")[:10]
        assert [a["item"] for a in answer] == candidates[order].tolist()
        np.testing.assert_allclose([a["score"] for a in answer], scores[order], atol=1e-5)
        assert [a["raw_item"] for a in answer] == raw_candidates[order].tolist()

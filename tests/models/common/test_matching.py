"""Matching building blocks: samplers against their formulas, each loss against hand-computed
values, temperature and logQ on the logits, retrieval metrics on hand-made rankings."""
import math

import numpy as np
import paddle
import pytest

from models.common.matching import candidate_logits, matching_loss
from models.common.metrics import retrieval_metrics
from models.common.sampling import NegativeSampler, distribution


def softplus(x):
    return math.log1p(math.exp(x))


COUNTS = np.array([0, 1, 4, 9, 16, 100, 0], dtype=np.float64)


@pytest.mark.parametrize("kind, weights", [
    ("uniform", [0, 1, 1, 1, 1, 1, 1]),
    ("popularity", [0] + [c ** 0.75 for c in [1, 4, 9, 16, 100]] + [0]),
    ("log_popularity", [0] + [math.log(1 + c) for c in [1, 4, 9, 16, 100]] + [0]),
    ("unigram", [0, 1, 4, 9, 16, 100, 0]),
])
def test_sampler_matches_its_formula(kind, weights):
    weights = np.array(weights, dtype=np.float64)
    expected = weights / weights.sum()
    np.testing.assert_allclose(distribution(COUNTS, kind), expected, rtol=1e-12)
    paddle.seed(7)
    draws = NegativeSampler(COUNTS, kind).sample([400, 1000]).numpy()
    assert draws.shape == (400, 1000) and draws.dtype == np.int64
    freq = np.bincount(draws.reshape(-1), minlength=len(COUNTS)) / draws.size
    assert freq[expected == 0].sum() == 0  # padding id 0 (and zero-count ids) never drawn
    np.testing.assert_allclose(freq, expected, atol=0.004)


def test_sampler_is_seeded():
    sampler = NegativeSampler(COUNTS, "popularity")
    paddle.seed(3)
    a = sampler.sample([8, 5]).numpy()
    paddle.seed(3)
    b = sampler.sample([8, 5]).numpy()
    paddle.seed(4)
    c = sampler.sample([8, 5]).numpy()
    assert (a == b).all() and not (a == c).all()


def test_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown sampler"):
        distribution(COUNTS, "zipf")
    with pytest.raises(ValueError, match="no id"):
        distribution([5, 0, 0], "popularity")


POS = [1.0, 0.0]
NEG = [[0.5, -1.0], [2.0, 0.0]]


def _loss(mode, mask=None, **kw):
    mask = None if mask is None else paddle.to_tensor(mask)
    return float(matching_loss(paddle.to_tensor(POS), paddle.to_tensor(NEG), mode, mask=mask, **kw))


def test_point_wise_bce():
    expected = (softplus(-1) + softplus(0) + softplus(0.5) + softplus(-1) + softplus(2) + softplus(0)) / 6
    assert _loss("point") == pytest.approx(expected, rel=1e-6)
    masked = (softplus(-1) + softplus(0) + softplus(0.5) + softplus(2) + softplus(0)) / 5
    assert _loss("point", [[True, False], [True, True]]) == pytest.approx(masked, rel=1e-6)


def test_pair_wise_bpr_and_hinge():
    diffs = [0.5, 2.0, -2.0, 0.0]
    assert _loss("pair") == pytest.approx(sum(softplus(-d) for d in diffs) / 4, rel=1e-6)
    assert _loss("pair", pair_loss="hinge", margin=0.1) == pytest.approx((0 + 0 + 2.1 + 0.1) / 4, rel=1e-6)
    assert _loss("pair", [[True, True], [False, True]], pair_loss="hinge", margin=0.1) == pytest.approx(0.1 / 3, rel=1e-6)


def test_list_wise_softmax():
    row1 = math.log(math.exp(1) + math.exp(0.5) + math.exp(-1)) - 1
    row2 = math.log(math.exp(0) + math.exp(2) + math.exp(0))
    assert _loss("list") == pytest.approx((row1 + row2) / 2, rel=1e-6)
    masked1 = math.log(math.exp(1) + math.exp(0.5)) - 1
    assert _loss("list", [[True, False], [True, True]]) == pytest.approx((masked1 + row2) / 2, rel=1e-6)


def test_unknown_mode_and_pair_loss():
    with pytest.raises(ValueError, match="unknown mode"):
        _loss("triplet")
    with pytest.raises(ValueError, match="unknown pair_loss"):
        _loss("pair", pair_loss="logistic")


class _Fixed:
    """A 'model' with fixed vectors: user i -> U[i], item j -> V[j]."""

    def __init__(self, users, items):
        self.users, self.items = paddle.to_tensor(users), paddle.to_tensor(items)

    def user_embedding(self, batch):
        return paddle.gather(self.users, batch["user_id"])

    def item_embedding(self, ids):
        return paddle.gather(self.items, ids.reshape([-1])).reshape(list(ids.shape) + [-1])


U = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype="float32")
V = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype="float32")
BATCH = {"user_id": paddle.to_tensor([0, 1, 2]), "item_id": paddle.to_tensor([1, 2, 1])}
HP = {"negatives": "in_batch", "neg_num": 0, "temperature": 1.0, "logq_correction": False}


def test_in_batch_logits_mask_and_logq():
    model = _Fixed(U, V)
    pos, neg, mask = candidate_logits(model, BATCH, None, HP)
    # Scores U @ V[item_ids].T = [[1,0,1],[0,2,0],[1,2,1]]; positives on the diagonal.
    np.testing.assert_allclose(pos.numpy(), [1, 2, 1])
    np.testing.assert_allclose(neg.numpy(), [[0, 1], [0, 0], [1, 2]])
    # Row 0's third candidate and row 2's first are item 1, its own positive: masked out.
    assert mask.numpy().tolist() == [[True, False], [True, True], [False, True]]
    log_q = paddle.to_tensor(np.log([1e-9, 0.5, 0.25, 0.25]).astype("float32"))
    pos_q, neg_q, _ = candidate_logits(model, BATCH, None, dict(HP, logq_correction=True), log_q)
    np.testing.assert_allclose(pos_q.numpy(), [1 - math.log(0.5), 2 - math.log(0.25), 1 - math.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(neg_q.numpy(), [[0 - math.log(0.25), 1 - math.log(0.5)],
                                               [0 - math.log(0.5), 0 - math.log(0.5)],
                                               [1 - math.log(0.5), 2 - math.log(0.25)]], rtol=1e-6)


def test_temperature_divides_logits_and_changes_the_loss():
    model = _Fixed(U, V)
    pos, neg, mask = candidate_logits(model, BATCH, None, HP)
    pos2, neg2, _ = candidate_logits(model, BATCH, None, dict(HP, temperature=0.5))
    np.testing.assert_allclose(pos2.numpy(), 2 * pos.numpy())
    np.testing.assert_allclose(neg2.numpy(), 2 * neg.numpy())
    for mode in ("point", "pair", "list"):
        assert float(matching_loss(pos, neg, mode, mask)) != pytest.approx(float(matching_loss(pos2, neg2, mode, mask)))


def test_sampled_negatives_go_through_the_item_tower():
    model = _Fixed(U, V)
    sampler = NegativeSampler([0, 1, 1, 1], "uniform")
    paddle.seed(0)
    pos, neg, mask = candidate_logits(model, BATCH, sampler, dict(HP, negatives="uniform", neg_num=4))
    paddle.seed(0)
    ids = sampler.sample([3, 4]).numpy()
    expected = np.einsum("bd,bkd->bk", U, V[ids])
    np.testing.assert_allclose(neg.numpy(), expected)
    assert (mask.numpy() == (ids != BATCH["item_id"].numpy()[:, None])).all()


def test_retrieval_metrics_by_hand():
    ranked = np.array([[5, 3, 9, 1], [2, 7, 1, 4], [8, 6, 0, 3]])
    targets = np.array([3, 4, 1])  # ranks 1, 3, absent
    m = retrieval_metrics(ranked, targets, ks=(1, 2, 4))
    assert m["hit@1"] == 0 and m["hit@2"] == pytest.approx(1 / 3) and m["hit@4"] == pytest.approx(2 / 3)
    assert m["recall@4"] == m["hit@4"]
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 3)
    assert m["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 3)
    assert m["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 3)
    assert m["mrr@1"] == 0
    with pytest.raises(ValueError, match="fewer than k"):
        retrieval_metrics(ranked, targets, ks=(10,))

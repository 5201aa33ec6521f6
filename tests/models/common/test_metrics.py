"""Metrics against hand-computed values."""
import math

import numpy as np
import pytest

from models.common.metrics import AUC, LogLoss, RunningAUC, auc, gauc, logloss, precision_recall_at_top, topk_metrics


def test_auc_hand_computed():
    # Pairs (pos, neg): (0.8>0.1) (0.8>0.4) (0.35<0.4) (0.35>0.1) -> 3 of 4.
    assert auc([1, 0, 1, 0], [0.8, 0.1, 0.35, 0.4]) == 0.75
    # A tie counts half.
    assert auc([1, 0], [0.5, 0.5]) == 0.5
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_running_auc_matches_exact_auc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    preds = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)
    running = RunningAUC()
    exact = AUC()
    for chunk in np.array_split(np.arange(5000), 7):
        running.update(preds[chunk], labels[chunk])
        exact.update(preds[chunk], labels[chunk])
    assert abs(running.accumulate() - exact.accumulate()) < 1e-3
    assert exact.accumulate() == auc(labels, preds)
    running.reset()
    assert math.isnan(running.accumulate())


def test_logloss_hand_computed():
    expected = -(math.log(0.9) + math.log(0.8)) / 2
    assert abs(logloss([1, 0], [0.9, 0.2]) - expected) < 1e-12
    metric = LogLoss()
    metric.update(np.array([0.9]), np.array([1]))
    metric.update(np.array([0.2]), np.array([0]))
    assert abs(metric.accumulate() - expected) < 1e-12


def test_gauc_skips_single_label_groups():
    labels = [1, 0, 1, 0, 1, 1]
    preds = [0.9, 0.1, 0.2, 0.8, 0.5, 0.6]
    groups = [0, 0, 1, 1, 2, 2]
    value, used, skipped = gauc(labels, preds, groups, weighted=False)
    assert (value, used, skipped) == (0.5, 2, 1)  # group 0 AUC 1, group 1 AUC 0, group 2 skipped
    value, _, _ = gauc([1, 0, 1, 0, 0, 0], [0.9, 0.1, 0.2, 0.8, 0.1, 0.7], [0, 0, 1, 1, 1, 1])
    assert abs(value - (2 * 1.0 + 4 * (1 / 3)) / 6) < 1e-12  # weighted by group size


def test_precision_recall_at_top():
    labels = [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    preds = [0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2]
    precision, recall = precision_recall_at_top(labels, preds, 0.2)  # top 2 rows: 1, 0
    assert (precision, recall) == (0.5, 1 / 3)


def test_topk_metrics():
    result = topk_metrics([[1, 2, 3], [4, 5, 6]], [{2}, {7}], k=2)
    assert result["hit"] == 0.5 and result["recall"] == 0.5
    assert abs(result["ndcg"] - 0.5 * (1 / math.log2(3))) < 1e-12


def test_merged_metrics_equal_one_metric_over_all_rows():
    """Data parallel: each rank's metric over its shard, merged, is the metric over every row."""
    from models.common.metrics import PairAUC, merge_metrics
    from models.common.multitask import RMSE

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    preds = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0.01, 0.99)
    pos, neg = rng.normal(size=300), rng.normal(size=(300, 4))
    kinds = [AUC, RunningAUC, LogLoss, RMSE, PairAUC]

    def fed(rows):
        metrics = [kind() for kind in kinds]
        for metric in metrics[:-1]:
            metric.update(preds[rows], labels[rows])
        metrics[-1].update(pos[rows], neg[rows])
        return metrics

    whole = fed(slice(0, 300))
    shards = [fed(slice(0, 120)), fed(slice(120, 300))]
    merged = [kind() for kind in kinds]
    merge_metrics(merged, shards)
    assert [m.accumulate() for m in merged] == pytest.approx([m.accumulate() for m in whole], rel=1e-12)
    assert shards[0][0].accumulate() != pytest.approx(whole[0].accumulate())  # a shard alone is another number

"""Metrics: exact functions for evaluation and accumulating objects for the runners.

An accumulating metric has ``update(pred, label)``, ``accumulate() -> float`` and ``reset()``;
inputs may be paddle tensors or numpy arrays of any shape (they are flattened).
"""
import math

import numpy as np
from sklearn.metrics import roc_auc_score


def to_numpy(x):
    if hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x).reshape(-1)


def auc(labels, preds):
    """Exact ROC AUC (ties counted half). NaN when only one class is present."""
    labels = to_numpy(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, to_numpy(preds)))


def logloss(labels, preds, eps=1e-7):
    labels = to_numpy(labels).astype(np.float64)
    preds = np.clip(to_numpy(preds).astype(np.float64), eps, 1 - eps)
    if labels.size == 0:
        return float("nan")
    return float(-np.mean(labels * np.log(preds) + (1 - labels) * np.log(1 - preds)))


def gauc(labels, preds, groups, weighted=True):
    """Group AUC: AUC per group over groups that have both labels, averaged.

    ``weighted`` weights each group by its row count (the usual GAUC); otherwise a plain mean.
    Returns (value, groups_used, groups_skipped); value is NaN when no group has both labels.
    """
    labels, preds, groups = to_numpy(labels), to_numpy(preds), to_numpy(groups)
    order = np.argsort(groups, kind="stable")
    labels, preds, groups = labels[order], preds[order], groups[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = np.r_[starts[1:], len(groups)]
    total, weight_sum, used = 0.0, 0.0, 0
    for s, e in zip(starts, ends):
        value = auc(labels[s:e], preds[s:e])
        if math.isnan(value):
            continue
        w = (e - s) if weighted else 1.0
        total += w * value
        weight_sum += w
        used += 1
    skipped = len(starts) - used
    return (total / weight_sum if used else float("nan")), used, skipped


def precision_recall_at_top(labels, preds, fraction):
    """Precision and recall among the top ``fraction`` of rows ranked by score."""
    labels, preds = to_numpy(labels), to_numpy(preds)
    k = max(1, int(round(len(labels) * fraction)))
    top = np.argsort(-preds, kind="stable")[:k]
    hits = float(labels[top].sum())
    positives = float(labels.sum())
    return hits / k, (hits / positives if positives else float("nan"))


def topk_metrics(ranked_items, relevant, k):
    """Hit rate, recall and NDCG at k for ranked item lists against sets of relevant items.

    ``ranked_items``: [users, >=k] item ids, best first; ``relevant``: list of sets per user.
    """
    hit = recall = ndcg = 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for items, rel in zip(ranked_items, relevant):
        if not rel:
            continue
        gains = np.array([item in rel for item in items[:k]], dtype=np.float64)
        hit += float(gains.any())
        recall += gains.sum() / len(rel)
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg += float((gains * discounts[: len(gains)]).sum() / ideal)
    users = sum(1 for rel in relevant if rel)
    if users == 0:
        return {"hit": float("nan"), "recall": float("nan"), "ndcg": float("nan")}
    return {"hit": hit / users, "recall": recall / users, "ndcg": ndcg / users}


def retrieval_metrics(ranked_items, targets, ks=(10, 50, 100)):
    """Hit, Recall, NDCG and MRR at each k for one held-out item per user (leave-last-out).

    ``ranked_items`` [users, >= max(ks)] retrieved ids, best first; ``targets`` [users] the held-out
    item. With one relevant item, Recall@k = Hit@k; NDCG@k = 1 / log2(rank + 2) and MRR@k =
    1 / (rank + 1) when the item is at 0-based ``rank`` < k, else 0. Means over users ->
    {"hit@10": ..., "recall@10": ..., "ndcg@10": ..., "mrr@10": ..., ...}.
    """
    ranked = np.asarray(ranked_items)
    targets = np.asarray(targets).reshape(-1, 1)
    if ranked.ndim != 2 or len(ranked) != len(targets):
        raise ValueError(f"ranked_items must be [users, k] for {len(targets)} users, got shape {ranked.shape}")
    if ranked.shape[1] < max(ks):
        raise ValueError(f"ranked_items has {ranked.shape[1]} columns, fewer than k = {max(ks)}")
    found = ranked == targets
    has = found.any(axis=1)
    rank = np.where(has, found.argmax(axis=1), np.iinfo(np.int64).max)
    out = {}
    for k in ks:
        within = rank < k
        safe = np.where(within, rank, 0)
        hit = float(within.mean()) if len(rank) else float("nan")
        out[f"hit@{k}"] = hit
        out[f"recall@{k}"] = hit
        out[f"ndcg@{k}"] = float(np.where(within, 1.0 / np.log2(safe + 2.0), 0.0).mean()) if len(rank) else float("nan")
        out[f"mrr@{k}"] = float(np.where(within, 1.0 / (safe + 1.0), 0.0).mean()) if len(rank) else float("nan")
    return out


def merge_metrics(metrics, others):
    """Fold into each of ``metrics`` the state of the same metric in ``others`` (lists of metrics,
    e.g. the other ranks' of a data-parallel epoch): every metric here keeps additive state in its
    underscore attributes (sums, counts, histograms, lists of scores), so the merged metric is the
    one that would have seen all their rows. A wrapper's state is its ``inner`` metric's."""
    for i, metric in enumerate(metrics):
        target = getattr(metric, "inner", metric)
        for other in others:
            source = getattr(other[i], "inner", other[i])
            for key, value in vars(source).items():
                if key.startswith("_"):
                    setattr(target, key, getattr(target, key) + value)  # lists concatenate, numbers add


class AUC:
    """Exact AUC over everything seen since the last reset (keeps all scores: for evaluation)."""

    def __init__(self, name="auc"):
        self.name = name
        self.reset()

    def reset(self):
        self._labels, self._preds = [], []

    def update(self, pred, label):
        self._preds.append(to_numpy(pred).astype(np.float64))
        self._labels.append(to_numpy(label))

    def accumulate(self):
        if not self._labels:
            return float("nan")
        return auc(np.concatenate(self._labels), np.concatenate(self._preds))


class RunningAUC:
    """AUC from score histograms (constant memory; for training logs).

    Scores in [0, 1] fall into ``num_buckets`` buckets; the AUC is exact up to ties inside a bucket.
    """

    def __init__(self, name="auc", num_buckets=4096):
        self.name = name
        self.num_buckets = num_buckets
        self.reset()

    def reset(self):
        self._pos = np.zeros(self.num_buckets, dtype=np.int64)
        self._neg = np.zeros(self.num_buckets, dtype=np.int64)

    def update(self, pred, label):
        pred, label = to_numpy(pred), to_numpy(label)
        bucket = np.clip((pred * self.num_buckets).astype(np.int64), 0, self.num_buckets - 1)
        positive = label > 0.5
        self._pos += np.bincount(bucket[positive], minlength=self.num_buckets)
        self._neg += np.bincount(bucket[~positive], minlength=self.num_buckets)

    def accumulate(self):
        total_pos, total_neg = self._pos.sum(), self._neg.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        # Every positive beats every negative in a lower bucket and ties half of its own bucket.
        neg_below = np.cumsum(self._neg) - self._neg
        wins = (self._pos * (neg_below + 0.5 * self._neg)).sum()
        return float(wins / (total_pos * total_neg))


class PairAUC:
    """Share of (positive, negative) pairs where the positive scores higher (ties count half),
    over everything seen since the last reset: the AUC of each row's positive against its own
    negatives, exact on raw logits (no buckets, so saturated sigmoids do not tie)."""

    def __init__(self, name="auc"):
        self.name = name
        self.reset()

    def reset(self):
        self._wins, self._pairs = 0.0, 0

    def update(self, pos, neg, mask=None):
        """``pos`` [B], ``neg`` [B, K], ``mask`` [B, K] (which negatives count)."""
        pos = np.asarray(pos.numpy() if hasattr(pos, "numpy") else pos, dtype=np.float64).reshape(-1, 1)
        neg = np.asarray(neg.numpy() if hasattr(neg, "numpy") else neg, dtype=np.float64)
        valid = np.ones(neg.shape, dtype=bool) if mask is None else np.asarray(mask.numpy() if hasattr(mask, "numpy") else mask)
        self._wins += float(((pos > neg) & valid).sum() + 0.5 * ((pos == neg) & valid).sum())
        self._pairs += int(valid.sum())

    def accumulate(self):
        return self._wins / self._pairs if self._pairs else float("nan")


class LogLoss:
    """Mean binary cross-entropy over everything seen since the last reset."""

    def __init__(self, name="logloss", eps=1e-7):
        self.name = name
        self.eps = eps
        self.reset()

    def reset(self):
        self._sum, self._count = 0.0, 0

    def update(self, pred, label):
        label = to_numpy(label).astype(np.float64)
        pred = np.clip(to_numpy(pred).astype(np.float64), self.eps, 1 - self.eps)
        self._sum += float(-(label * np.log(pred) + (1 - label) * np.log(1 - pred)).sum())
        self._count += label.size

    def accumulate(self):
        return self._sum / self._count if self._count else float("nan")

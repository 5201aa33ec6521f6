"""Negative samplers for matching models, vectorised (one searchsorted per batch, no Python loop
per sample) and drawn from paddle's generator, which the runners seed per epoch (so a run is
reproducible and a resumed run draws what the uninterrupted one drew).

Distributions over item ids, from each item's count of training positives ``counts[i]``:

    uniform          p_i = 1 / n                     (over the ids that may be drawn)
    popularity       p_i ∝ counts[i] ** 0.75         (word2vec's smoothed unigram)
    log_popularity   p_i ∝ log(1 + counts[i])
    unigram          p_i ∝ counts[i]                 (how often an item is a positive: the
                                                      sampling probability of in-batch negatives,
                                                      used for their logQ correction)

``exclude`` ids (the padding id 0) are never drawn.
"""
import numpy as np
import paddle

KINDS = ("uniform", "popularity", "log_popularity", "unigram")


def distribution(counts, kind, exclude=(0,)):
    """Probabilities (float64, sum 1) of drawing each id."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative numbers")
    if kind == "uniform":
        weights = np.ones_like(counts)
    elif kind == "popularity":
        weights = counts ** 0.75
    elif kind == "log_popularity":
        weights = np.log1p(counts)
    elif kind == "unigram":
        weights = counts.copy()
    else:
        raise ValueError(f"unknown sampler {kind!r}; expected one of {', '.join(KINDS)}")
    weights[list(exclude)] = 0.0
    total = weights.sum()
    if total <= 0:
        raise ValueError(f"sampler {kind!r}: no id has a positive probability")
    return weights / total


class NegativeSampler:
    """Draws ids from ``distribution(counts, kind)``; ``log_q`` holds log p_i for the logQ correction
    (-inf where p_i = 0; such ids are never drawn)."""

    def __init__(self, counts, kind, exclude=(0,)):
        self.kind = kind
        self.probs = distribution(counts, kind, exclude)
        cdf = np.cumsum(self.probs)
        cdf[-1] = 1.0  # rounding: every uniform draw in [0, 1) lands on an id
        self.cdf = paddle.to_tensor(cdf)
        with np.errstate(divide="ignore"):
            self.log_q = paddle.to_tensor(np.log(self.probs).astype("float32"))
        self.num_ids = len(self.probs)

    def sample(self, shape):
        """int64 tensor of ``shape`` ids (drawn independently, with replacement)."""
        uniform = paddle.rand(shape, dtype="float64")
        # right=True: id i is chosen for cdf[i-1] <= u < cdf[i], never an id of probability 0.
        ids = paddle.searchsorted(self.cdf, uniform.reshape([-1]), right=True)
        return paddle.clip(ids, max=self.num_ids - 1).reshape(shape).astype("int64")

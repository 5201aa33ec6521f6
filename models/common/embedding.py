"""Feature embeddings: single-id sparse fields, dense fields, multi-id (multi-hot) fields."""
import math

import paddle
import paddle.nn as nn


def _normal(std, truncated=False):
    init = nn.initializer.TruncatedNormal(std=std) if truncated else nn.initializer.Normal(std=std)
    return paddle.ParamAttr(initializer=init)


class SparseEmbedding(nn.Layer):
    """One table looked up by integer ids of any shape: ids [...] -> [..., dim].

    ``sparse=True`` produces row-sparse gradients (cheap for huge tables on one process; not
    usable with DataParallel, which needs dense gradients to all-reduce).
    """

    def __init__(self, num_ids, dim, sparse=False, init_std=None, padding_idx=None, truncated=False):
        super().__init__()
        self.num_ids = num_ids
        self.dim = dim
        std = init_std if init_std is not None else 1.0 / math.sqrt(dim)
        self.table = nn.Embedding(num_ids, dim, padding_idx=padding_idx, sparse=sparse,
                                  weight_attr=_normal(std, truncated))

    @property
    def weight(self):
        return self.table.weight

    def forward(self, ids):
        return self.table(ids)


class DenseEmbedding(nn.Layer):
    """Each dense field i gets a learned vector v_i, scaled by the field's value:
    values [batch, fields] -> [batch, fields, dim]. With dim=1 this is a per-field linear weight."""

    def __init__(self, num_fields, dim, init_std=None):
        super().__init__()
        std = init_std if init_std is not None else 1.0 / math.sqrt(dim)
        self.weight = self.create_parameter([1, num_fields, dim], attr=_normal(std))

    def forward(self, values):
        return values.unsqueeze(-1) * self.weight


def sequence_mask(lengths, max_len, dtype="float32"):
    """[batch] lengths -> [batch, max_len] mask with 1 for positions < length."""
    positions = paddle.arange(max_len, dtype=lengths.dtype).unsqueeze(0)
    return (positions < lengths.reshape([-1, 1])).astype(dtype)


def pool(embeddings, mask, mode="mean"):
    """Pool [batch, len, dim] over positions where mask [batch, len] is 1.

    ``mean`` divides by the number of valid positions (at least 1, so an empty list pools to 0).
    """
    if mode not in ("mean", "sum"):
        raise ValueError(f"pooling mode {mode!r} unknown; expected 'mean' or 'sum'")
    summed = paddle.sum(embeddings * mask.unsqueeze(-1), axis=1)
    if mode == "sum":
        return summed
    count = paddle.clip(paddle.sum(mask, axis=1, keepdim=True), min=1.0)
    return summed / count


class MultiHotEmbedding(nn.Layer):
    """Variable-length id lists pooled to one vector: ids [batch, max_len] -> [batch, dim].

    Valid positions come from ``lengths`` [batch] when given, otherwise every id different from
    ``padding_idx``.
    """

    def __init__(self, num_ids, dim, mode="mean", padding_idx=0, sparse=False, init_std=None):
        super().__init__()
        self.mode = mode
        self.padding_idx = padding_idx
        self.embedding = SparseEmbedding(num_ids, dim, sparse=sparse, init_std=init_std)

    def forward(self, ids, lengths=None):
        if lengths is not None:
            mask = sequence_mask(lengths, ids.shape[1])
        else:
            mask = (ids != self.padding_idx).astype("float32")
        return pool(self.embedding(ids), mask, self.mode)

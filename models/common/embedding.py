"""Feature embeddings: the declared sparse and sequence features of a batch (one fused table),
and dense fields scaled into vectors."""
import math

import numpy as np

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.features import DenseFeature, SequenceFeature, SparseFeature
from models.common.layers import expanded, split_views
from models.common.sharding import ShardedTable, active_sharding


def _normal(std, truncated=False):
    init = nn.initializer.TruncatedNormal(std=std) if truncated else nn.initializer.Normal(std=std)
    return paddle.ParamAttr(initializer=init)


def flat_column(x):
    """A [B] or [B, 1] batch column as [B] (no reshape op when it already is one: 26 of them cost
    0.2 ms of a 7 ms DeepFM forward)."""
    return x if x.ndim == 1 else x.reshape([-1])


def length_mask(lengths, max_len, dtype):
    """[..., max_len]: 1 where the position is below the length (``lengths`` [...]), else 0."""
    return (paddle.arange(max_len, dtype=lengths.dtype) < lengths.unsqueeze(-1)).astype(dtype)


def compact_ids(id_tensors):
    """Unique ids over several int64 tensors and each tensor re-expressed as positions in them.

    -> (unique_ids [n] ascending, [local ids with the shape of each input]).

    Ids are data (no gradient), so this runs in numpy: paddle's CPU ``unique(return_inverse=True)``
    took 3.5 s for the 170k ids of one task at batch 1024 (numpy: ~10 ms).
    """
    arrays = [t.numpy() if isinstance(t, paddle.Tensor) else np.asarray(t) for t in id_tensors]
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    unique, inverse = np.unique(flat, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    locals_, start = [], 0
    for a in arrays:
        locals_.append(paddle.to_tensor(inverse[start:start + a.size].reshape(a.shape)))
        start += a.size
    return paddle.to_tensor(unique.astype(np.int64)), locals_


def gather_rows(table, unique_ids):
    """``table[unique_ids]`` with a row-sparse gradient into ``table`` (no dense [V, d] grad)."""
    return F.embedding(unique_ids, table, sparse=True)


class RowSparseEmbedding(nn.Embedding):
    """``nn.Embedding(..., sparse=True)`` whose gradient holds each row once. A training lookup
    gathers the batch's distinct ids (``gather_rows``) and indexes them per position, so the
    row-sparse gradient has distinct, ascending rows: lazy Adam then skips merging repeated rows,
    which paddle does slowly (DeepFM at batch 1024, 26,624 lookups of ~20,700 rows: the table's
    lookup, backward and update 17 -> 9 ms), and the data-parallel exchange sends the rows as they
    come (tools.utils.parallel). Inference and traced graphs (export) look up directly."""

    def __init__(self, num_embeddings, embedding_dim, weight_attr=None):
        super().__init__(num_embeddings, embedding_dim, sparse=True, weight_attr=weight_attr)

    def forward(self, ids):
        if not (paddle.in_dynamic_mode() and paddle.is_grad_enabled() and not self.weight.stop_gradient):
            return super().forward(ids)
        unique, (local,) = compact_ids([ids])
        return F.embedding(local, gather_rows(self.weight, unique))


class DenseEmbedding(nn.Layer):
    """Each dense field i gets a learned vector v_i, scaled by the field's value:
    values [batch, fields] -> [batch, fields, dim]. With dim=1 this is a per-field linear weight."""

    def __init__(self, num_fields, dim, init_std=None):
        super().__init__()
        std = init_std if init_std is not None else 1.0 / math.sqrt(dim)
        self.weight = self.create_parameter([1, num_fields, dim], attr=_normal(std))

    @property
    def vectors(self):
        """[fields, dim]: v_i per field (for a model that uses the values' linearity instead of
        building the [batch, fields, dim] products)."""
        return self.weight.reshape(self.weight.shape[1:])

    def forward(self, values):
        return paddle.multiply(*expanded(values.unsqueeze(-1), self.weight))


class FeatureEmbedding(nn.Layer):
    """Embeds a dict batch's declared sparse and sequence features with one fused table.

    Every table - a feature's own, or the one of the feature it is ``shared_with`` - owns the rows
    ``[offset, offset + vocab_size)`` of one ``[total, dim]`` parameter, so a batch needs a single
    lookup. The steps are exposed for meta-learning, which looks rows up in a task's row subset
    (models.common.meta):

        ids = fe.global_ids(batch)          # [B, W] rows of the fused table
        emb = fe.lookup(ids)                # [B, W, dim]  (or meta.lookup(rows, local_ids))
        fields = fe.pool(emb, batch)        # [B, F, dim]: sparse fields, then pooled sequences
        fe.select(fields, names)            # [B, len(names), dim] in the order of ``names``

    ``init``: ``"xavier_uniform"`` (each table with its own shape, as paddle's nn.Embedding
    default per table) or ``("normal" | "truncated_normal", std)``.
    """

    def __init__(self, features, dim=None, sparse=False, init=("normal", None)):
        super().__init__()
        self.sparse_features = [f for f in features if isinstance(f, SparseFeature) and not isinstance(f, SequenceFeature)]
        self.sequence_features = [f for f in features if isinstance(f, SequenceFeature)]
        embedded = self.sparse_features + self.sequence_features
        if not embedded:
            raise ValueError("FeatureEmbedding needs at least one sparse or sequence feature")
        self.dim = dim or embedded[0].embed_dim
        by_name = {f.name: f for f in features}
        offsets, sizes, total = {}, [], 0
        for f in [f for f in features if f in embedded]:  # tables in declaration order
            owner = f.shared_with or f.name
            if owner not in offsets:
                if owner not in by_name:
                    raise ValueError(f"feature {f.name} shares the table of {owner!r}, which is not embedded here")
                offsets[owner] = total
                sizes.append(by_name[owner].vocab_size)
                total += by_name[owner].vocab_size
        self.num_rows = total
        self.table_offset = {f.name: offsets[f.shared_with or f.name] for f in embedded}
        self.feature = {f.name: f for f in embedded}
        self.names = [f.name for f in embedded]
        self.position = {name: i for i, name in enumerate(self.names)}
        # Column layout of global_ids: the sparse fields, then every sequence padded to the longest
        # one (positions past a feature's own max_len repeat its last column and are masked out).
        self.max_len = max([f.max_len for f in self.sequence_features], default=0)
        columns, widths = [], 0
        for f in self.sparse_features:
            columns.append(widths)
            widths += 1
        for f in self.sequence_features:
            columns.extend(widths + np.minimum(np.arange(self.max_len), f.max_len - 1))
            widths += f.max_len
        self.register_buffer("layout", paddle.to_tensor(np.array(columns, dtype="int64")), persistable=False)
        offset_per_column = np.concatenate(
            [[offsets[f.shared_with or f.name]] for f in self.sparse_features]
            + [[offsets[f.shared_with or f.name]] * self.max_len for f in self.sequence_features]).astype("int64")
        self.register_buffer("offsets", paddle.to_tensor(offset_per_column), persistable=False)
        self.pooling_sum = [f.pooling == "sum" for f in self.sequence_features]
        # The initializer runs when the table is created (so the random stream - and every later
        # parameter - is the same as with a plain nn.Embedding); Xavier then rescales per table.
        kind, std = ("normal", None) if init == "xavier_uniform" else init
        attr = _normal(std if std is not None else 1.0 / math.sqrt(self.dim), truncated=kind == "truncated_normal")
        limits = np.repeat([math.sqrt(6.0 / (s + self.dim)) for s in sizes], sizes).astype("float32")
        sharding = active_sharding()
        if sharding is None:
            self.table = RowSparseEmbedding(total, self.dim, weight_attr=attr) if sparse \
                else nn.Embedding(total, self.dim, weight_attr=attr)
            if init == "xavier_uniform":
                weight = self.table.weight
                weight.set_value(paddle.uniform(weight.shape, dtype=weight.dtype, min=-1.0, max=1.0)
                                 * paddle.to_tensor(limits).astype(weight.dtype).unsqueeze(1))
        else:  # this rank's rows only, drawn as the whole table is above
            draws = [lambda start, rows: paddle.create_parameter([rows, self.dim], "float32", attr=attr)]
            if init == "xavier_uniform":
                draws.append(lambda start, rows: paddle.uniform([rows, self.dim], min=-1.0, max=1.0)
                             * paddle.to_tensor(limits[start:start + rows]).unsqueeze(1))
            self.table = ShardedTable(total, self.dim, *sharding, draws, sparse=sparse)

    @property
    def weight(self):
        """The whole fused table (refused when it is row-sharded: a rank holds 1/N of it)."""
        if isinstance(self.table, ShardedTable):
            raise ValueError("this model reads its whole embedding table, which runner.embedding_sharding=row "
                             "splits over the ranks: train it with runner.embedding_sharding=none")
        return self.table.weight

    def load_rows(self, name, ids, vectors, freeze=False):
        """Initialise feature ``name``'s rows for ``ids`` with ``vectors`` [len(ids), dim]
        (pretrained embeddings). ``freeze``: those rows get a zero gradient from now on, so
        an optimiser without weight decay never moves them; the other rows train as usual."""
        ids, vectors = np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"pretrained vectors for {name} have shape {vectors.shape}, expected "
                             f"({len(ids)}, {self.dim}): the embedding size")
        vocab = self.feature[name].vocab_size
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"pretrained ids for {name} must lie in [0, {vocab}), got {ids.min()}..{ids.max()}")
        rows = self.table_offset[name] + ids
        value = self.table.weight.numpy()
        if isinstance(self.table, ShardedTable):  # the rows this rank holds
            mine = rows % self.table.world_size == self.table.rank
            rows, vectors = rows[mine] // self.table.world_size, vectors[mine]
        value[rows] = vectors
        self.table.weight.set_value(value)
        if freeze:
            if isinstance(self.table, ShardedTable):
                raise ValueError(f"freezing pretrained rows of {name} needs whole tables: runner.embedding_sharding=none")
            if self.table._sparse:
                raise ValueError(f"freezing pretrained rows of {name} needs dense embedding gradients")
            keep = np.ones((self.num_rows, 1), dtype=np.float32)
            keep[rows] = 0.0
            self.register_buffer(f"trainable_rows_{name}", paddle.to_tensor(keep), persistable=False)
            self.table.weight.register_hook(lambda grad, k=getattr(self, f"trainable_rows_{name}"): grad * k)

    def global_ids(self, batch):
        """[B, W] rows of the fused table for the batch's sparse ids and padded sequences."""
        if not self.sequence_features:  # single ids: the layout is the identity (stack: half concat's time)
            return paddle.stack([flat_column(batch[f.name]) for f in self.sparse_features], axis=1) + self.offsets
        parts = [batch[f.name].reshape([-1, 1]) for f in self.sparse_features]
        parts += [batch[f.name] for f in self.sequence_features]
        ids = parts[0] if len(parts) == 1 else paddle.concat(parts, axis=1)
        return paddle.index_select(ids, self.layout, axis=1) + self.offsets

    def lookup(self, ids):
        return self.table(ids)

    def pool(self, emb, batch):
        """[B, W, dim] looked-up rows -> [B, F, dim]: the sparse fields, then the sequences pooled
        (mean or sum) over their first ``<name>_length`` ids."""
        num_sparse = len(self.sparse_features)
        if not self.sequence_features:
            return emb
        batch_size, num_seq = emb.shape[0], len(self.sequence_features)
        padded = emb[:, num_sparse:].reshape([batch_size, num_seq, self.max_len, self.dim])
        mask, divisor = self._sequence_mask(batch, emb.dtype)
        pooled = paddle.sum(paddle.multiply(*expanded(padded, mask.unsqueeze(-1))), axis=2) / divisor
        return pooled if not num_sparse else paddle.concat([emb[:, :num_sparse], pooled], axis=1)

    def select(self, fields, names):
        """The fields ``names`` of ``pool``'s output, in that order: [B, len(names), dim]."""
        positions = [self.position[n] for n in names]
        runs, start = [], 0
        for i in range(1, len(positions) + 1):  # contiguous runs become slices
            if i == len(positions) or positions[i] != positions[i - 1] + 1:
                runs.append(fields[:, positions[start]:positions[i - 1] + 1])
                start = i
        return runs[0] if len(runs) == 1 else paddle.concat(runs, axis=1)

    def pool_weights(self, batch):
        """[B, S, max_len] weights (no gradient) of each sequence's padded columns in ``pool``:
        mask / count for mean pooling, the mask for sum pooling. For a lookup ``seq`` of the
        sequence columns reshaped to [B, S, max_len, dim], ``sum(seq * weights[..., None], 2)`` is
        ``pool``'s pooled part - without ``pool``'s slices of [B, W, dim], whose (double) gradients
        are slow on CPU."""
        with paddle.no_grad():
            mask, divisor = self._sequence_mask(batch, self.table.weight.dtype)
            return mask / divisor

    def _sequence_mask(self, batch, dtype):
        """-> (mask [B, S, max_len]: 1 on each sequence's first ``<name>_length`` columns, divisor
        [B, S, 1]: what its masked sum is divided by - the length, at least 1 (an empty sequence
        pools to 0), for mean pooling; 1 for sum pooling)."""
        lengths = paddle.stack([batch[f.length_name].reshape([-1]) for f in self.sequence_features], axis=1)
        mask = length_mask(lengths, self.max_len, dtype)
        divisor = paddle.clip(paddle.sum(mask, axis=2, keepdim=True), min=1.0)
        if any(self.pooling_sum):
            keep = paddle.to_tensor(np.array(self.pooling_sum).reshape([1, -1, 1]))
            divisor = paddle.where(keep, paddle.ones_like(divisor), divisor)
        return mask, divisor

    def sparse_columns(self, names):
        """Columns of ``global_ids`` holding the sparse (single-id) features ``names``."""
        return [self.sparse_features.index(next(f for f in self.sparse_features if f.name == n)) for n in names]

    def embed(self, batch, names):
        """[B, len(names), dim]: the named features only (the batch may lack the others), each
        sparse id looked up, each sequence pooled over its first ``<name>_length`` ids; one lookup."""
        parts, widths = [], []
        for name in names:
            ids = batch[name] + self.table_offset[name]
            parts.append(ids.reshape([-1, 1]) if ids.ndim == 1 else ids)
            widths.append(parts[-1].shape[1])
        emb = self.table(parts[0] if len(parts) == 1 else paddle.concat(parts, axis=1))  # [B, W, dim]
        if all(w == 1 and not hasattr(self.feature[n], "max_len") for n, w in zip(names, widths)):
            return emb  # single ids only: nothing to pool
        pieces = split_views(emb, widths, axis=1)
        fields = []
        for name, piece in zip(names, pieces):
            feature = self.feature[name]
            if not hasattr(feature, "max_len"):
                fields.append(piece)
                continue
            mask = length_mask(batch[feature.length_name].reshape([-1]), piece.shape[1], piece.dtype)  # [B, L]
            pooled = paddle.matmul(mask.unsqueeze(1), piece)  # [B, 1, dim]: the masked sum, as a batched matmul (a
            # broadcast multiply's gradient is slow on CPU)
            if feature.pooling == "mean":  # an empty sequence pools to 0
                pooled = pooled / paddle.clip(mask.sum(axis=1), min=1.0).reshape([-1, 1, 1])
            fields.append(pooled)
        return fields[0] if len(fields) == 1 else paddle.concat(fields, axis=1)

    def forward(self, batch):
        return self.pool(self.lookup(self.global_ids(batch)), batch)


class BagEmbedding(FeatureEmbedding):
    """Like ``FeatureEmbedding`` (same fused table, offsets and initialisation), for many
    variable-length fields of very different ``max_len`` (Ali-CCP: 23 fields, from one id to
    several hundred). forward(batch) -> [B, F, dim], the fields in declaration order (sparse,
    then sequences); an empty sequence pools to zeros.

    One lookup serves every field: each field's first id is a plain lookup (times 0 for an
    empty sequence, whose first id is replaced by its table's row 0: Ali-CCP's padding id), and
    only the further ids of the multi-id fields (``max_len`` > 1) - those a row really has, not
    the padding - are added onto their field's row (index_add). A field that holds one id is
    never pooled: paddle's segment pooling costs ~1 us per bag on CPU, 18 ms of a 31 ms ESMM
    forward at batch 1024."""

    def __init__(self, features, dim=None, sparse=False, init=("normal", None)):
        super().__init__(features, dim=dim, sparse=sparse, init=init)
        fields = self.sparse_features + self.sequence_features
        self.num_fields = len(fields)
        self.register_buffer("first_offsets", paddle.to_tensor(np.array(
            [self.table_offset[f.name] for f in fields], dtype="int64")), persistable=False)
        # The multi-id fields' columns past the first: owning field, position, table offset.
        self.bags = [f for f in self.sequence_features if f.max_len > 1]
        field, position, offsets = [], [], []
        for f in self.bags:
            field += [fields.index(f)] * (f.max_len - 1)
            position += range(1, f.max_len)
            offsets += [self.table_offset[f.name]] * (f.max_len - 1)
        self.register_buffer("extra_field", paddle.to_tensor(np.array(field, dtype="int64")), persistable=False)
        self.register_buffer("extra_position", paddle.to_tensor(np.array(position, dtype="int64")), persistable=False)
        self.register_buffer("extra_offsets", paddle.to_tensor(np.array(offsets, dtype="int64")), persistable=False)
        # Only a bag's sum is divided for mean pooling: a field of max_len 1 holds at most one id
        # (the readers and the server refuse more), whose mean is itself.
        self.mean = [f in self.bags and f.pooling == "mean" for f in fields]

    def forward(self, batch):
        # One column per field (stacked from [B] views: half the time of joining [B, 1] columns).
        firsts = [flat_column(batch[f.name]) for f in self.sparse_features]
        firsts += [batch[f.name][:, 0] if f.max_len > 1 else flat_column(batch[f.name]) for f in self.sequence_features]
        first = paddle.stack(firsts, axis=1)  # [B, F]
        # traced into a static graph (export) the batch size is only known when the graph runs
        rows = first.shape[0] if paddle.in_dynamic_mode() else paddle.shape(first)[0]
        lengths = None
        if self.sequence_features:
            lengths = [flat_column(batch[f.length_name]) for f in self.sequence_features]
            lengths = paddle.stack([paddle.ones_like(lengths[0])] * len(self.sparse_features) + lengths, axis=1)
            if lengths.dtype != paddle.int64:
                lengths = lengths.astype("int64")  # [B, F]
            present = (lengths > 0).astype("int64")
            first = first * present
        ids = (first + self.first_offsets).reshape([-1])
        if self.bags:
            extra = paddle.concat([batch[f.name][:, 1:] for f in self.bags], axis=1)  # [B, E]
            valid = self.extra_position < paddle.index_select(lengths, self.extra_field, axis=1)
            extra_ids = paddle.masked_select(extra + self.extra_offsets, valid)
            slots = paddle.masked_select(
                paddle.arange(rows, dtype="int64").unsqueeze(1) * self.num_fields + self.extra_field, valid)
            ids = paddle.concat([ids, extra_ids])
        pooled = self.table(ids)
        if self.bags and not paddle.in_dynamic_mode():  # traced (export): sizes known when the graph runs
            firsts = rows * self.num_fields  # scatter_nd_add: index_add's sum, and an ONNX op (ScatterND add)
            pooled = paddle.scatter_nd_add(pooled[:firsts], slots.unsqueeze(-1), pooled[firsts:])
        elif self.bags and extra_ids.shape[0]:
            pooled, extra_rows = split_views(pooled, [rows * self.num_fields, extra_ids.shape[0]], axis=0)
            pooled = paddle.index_add(pooled, slots, 0, extra_rows)
        pooled = pooled.reshape([rows, self.num_fields, self.dim])
        if lengths is not None:
            pooled = paddle.multiply(*expanded(pooled, present.astype(pooled.dtype).unsqueeze(-1)))
            if any(self.mean):
                keep = paddle.to_tensor(np.array(self.mean).reshape([1, -1, 1]))
                divisor = paddle.clip(lengths.astype(pooled.dtype).unsqueeze(-1), min=1.0)
                pooled = paddle.where(keep, pooled / divisor, pooled)
        return pooled


class FlatFeatures(nn.Layer):
    """All input features of a schema as one vector per row: the sparse and sequence features
    embedded (one fused table, sequences pooled) and flattened, then the dense features as they
    are. [B, fields * dim + dense width]; labels are never read. Single-id fields only (Criteo)
    are plain lookups; with sequences (Ali-CCP's bags of very different lengths) a BagEmbedding
    pools only the ids a row has."""

    def __init__(self, schema, sparse=False, init=("normal", None)):
        super().__init__()
        embedded = schema.of_kind(SparseFeature)
        table = BagEmbedding if schema.of_kind(SequenceFeature) else FeatureEmbedding
        self.embedding = table(embedded, sparse=sparse, init=init) if embedded else None
        self.dense_names = [f.name for f in schema.of_kind(DenseFeature)]
        self.output_dim = (len(embedded) * self.embedding.dim if embedded else 0) \
            + sum(schema[n].dim for n in self.dense_names)
        if self.output_dim == 0:
            raise ValueError("the schema declares no input feature")

    def forward(self, batch):
        parts = []
        if self.embedding is not None:
            parts.append(self.embedding(batch).flatten(start_axis=1))
        for name in self.dense_names:
            value = batch[name]
            parts.append(value.reshape([value.shape[0], -1]).astype("float32"))
        return parts[0] if len(parts) == 1 else paddle.concat(parts, axis=1)

"""Row-sharded embedding tables (``runner.embedding_sharding: row`` under data parallel).

Each of N ranks holds the rows ``i`` of a fused table with ``i % N == rank``, at local row
``i // N``: 1/N of the table and of its optimizer state. A lookup exchanges ids and vectors, and
after the backward the gradient rows go back to their owners. gloo (paddle's CPU backend) has no
all-to-all - ``alltoall`` and ``alltoall_single`` raise "ProcessGroupGLOO does not support
all_to_all" in paddle 3.3 - so every exchange is an all-gather of parts padded to the largest and
cut back after; each rank keeps the part it needs.

A training step on rank r, for each lookup of a sharded table:
  1. forward: r's distinct ids are all-gathered (every rank learns every rank's requests); each
     owner gathers the vectors of the requested ids it holds (each distinct id once) and the
     vectors are all-gathered; r looks its ids up in what came back. The vectors are a leaf
     tensor of the graph, so the backward leaves r's gradient per distinct id on it.
  2. ``exchange_gradients`` (tools.utils.parallel, after the backward): the ranks all-gather those
     gradient rows (the ids are known from step 1); each owner sums the rows of its ids over the
     ranks and sets them as its shard's row-sparse gradient, which the optimizer applies (lazy
     Adam: to those rows only).
The result is single-process training on the union of the ranks' batches, as with the row-sparse
exchange (up to summation order). Initial values are drawn as one process would draw the whole
table - block by block from the same random stream, each rank keeping its rows - so a sharded run
starts where an unsharded one does, without ever holding the whole table.
"""
import contextlib

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn as nn
import paddle.nn.functional as F

INIT_BLOCK_ROWS = 1 << 16  # rows drawn at a time while initialising a shard (small: see ShardedTable)
_active = []


@contextlib.contextmanager
def row_sharding(rank, world_size):
    """Tables built inside (models.common.embedding.FeatureEmbedding) are row-sharded over the ranks."""
    _active.append((rank, world_size))
    try:
        yield
    finally:
        _active.pop()


def active_sharding():
    """(rank, world_size) while a model is built under ``row_sharding``, else None."""
    return _active[-1] if _active else None


def sharded_tables(model):
    return [layer for layer in model.sublayers(include_self=True) if isinstance(layer, ShardedTable)]


def shard_of(values, rank, world_size, start=0):
    """The rows of ``values`` (global rows ``start``, ``start + 1``, ...) that ``rank`` owns."""
    return values[(rank - start) % world_size::world_size]


def all_gather_rows(tensor):
    """Every rank's ``tensor`` (the same shape on every rank) -> [world_size, *shape], in rank
    order. Into one buffer (paddle.distributed.stream): the list form of all_gather splits and
    copies the result, 2.3-5.3 against 1.3-1.5 ms for 24k x 12 floats on gloo."""
    out = paddle.empty([dist.get_world_size(), *tensor.shape], tensor.dtype)
    dist.stream.all_gather(out, tensor)
    return out


def all_gather_parts(tensor, counts):
    """Each rank's ``tensor`` (its first dimension ``counts[rank]``; ``counts`` known to every rank)
    -> the list of all ranks' tensors. gloo's all-gather needs one shape: parts are padded."""
    longest = max(counts)
    if tensor.shape[0] < longest:
        pad = paddle.zeros([longest - tensor.shape[0], *tensor.shape[1:]], tensor.dtype)
        tensor = paddle.concat([tensor, pad])
    return [part[:n] for part, n in zip(all_gather_rows(tensor), counts)]


def all_gather_counts(counts):
    """Every rank's ``counts`` (ints, as many on every rank) -> int64 [world_size, len(counts)], in rank order."""
    return all_gather_rows(paddle.to_tensor(counts, dtype="int64")).numpy()


def sum_rows(ids, rows):
    """Rows ``rows`` [n, dim] of ids ``ids`` (n, repeats allowed; numpy) -> (distinct ids
    ascending, their summed rows), each sum in the rows' order. numpy on the host: paddle's unique
    with return_inverse took 1.3 s for 26k ids on CPU, its index_add 5 ms for 26k x 10 floats, its
    merge_selected_rows 8.3 ms (this: 4.3)."""
    ids, rows = np.asarray(ids, dtype=np.int64), np.asarray(rows)
    n = len(ids)
    steps = np.diff(ids)
    if (steps > 0).all():  # distinct and ascending already (a RowSparseEmbedding's lookup)
        return ids, rows
    # The stable order by id. A few ascending runs (the ranks' merged rows, one after the other)
    # take timsort, which merges runs (0.3 ms for 2 x 20k ids); others the fast unstable sort of
    # the distinct keys id * n + position (1.5 against 3.7 ms for 53k ids).
    if np.count_nonzero(steps < 0) < 64 or ids.max() >= np.iinfo(np.int64).max // n - 1:
        order = np.argsort(ids, kind="stable")
    else:
        order = np.argsort(ids * n + np.arange(n))
    ordered = ids[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    summed = rows[order[first]]
    # Most ids come once: only the repeats are added, in order (numpy's reduceat costs per group:
    # 4.4 ms for 53k rows of 10 floats)
    repeats = np.flatnonzero(~first)
    if len(repeats):
        np.add.at(summed, np.cumsum(first)[repeats] - 1, rows[order[repeats]])
    return ordered[first], summed


def set_row_gradient(param, ids, rows, sparse=True):
    """``rows`` [len(ids), dim] as ``param``'s gradient of rows ``ids`` (distinct): the backward of
    a lookup of them given ``rows`` (numpy) as its output's gradient (row-sparse when ``sparse``,
    as a sparse nn.Embedding's)."""
    param.clear_gradient(False)
    F.embedding(paddle.to_tensor(ids), param, sparse=sparse).backward(paddle.to_tensor(rows))


class ShardedTable(nn.Layer):
    """In place of ``nn.Embedding(num_rows, dim)``: ``weight`` is this rank's shard
    [ceil((num_rows - rank) / N), dim]. ``draws``: functions ``(first row, rows) -> [rows, dim]``
    drawing from the global random stream, each run over the whole table block by block, in turn
    (the last one's values are kept: Xavier draws twice, see FeatureEmbedding)."""

    def __init__(self, num_rows, dim, rank, world_size, draws, sparse=True):
        super().__init__()
        self.num_rows, self.dim, self.rank, self.world_size = num_rows, dim, rank, world_size
        self._sparse = sparse
        # Filled block by block, no copy of the shard on the side: the process keeps memory it frees
        # (tools.utils.prepare_process), so a transient copy would stay in its resident memory.
        self.weight = self.create_parameter([len(range(rank, num_rows, world_size)), dim],
                                            default_initializer=nn.initializer.Constant(0.0))
        for i, draw in enumerate(draws):  # same stream as one draw of the whole table: later parameters match too
            filled = 0
            for start in range(0, num_rows, INIT_BLOCK_ROWS):
                block = draw(start, min(INIT_BLOCK_ROWS, num_rows - start))
                if i == len(draws) - 1:
                    mine = shard_of(block, rank, world_size, start)
                    with paddle.no_grad():
                        self.weight[filled:filled + mine.shape[0]] = mine
                    filled += mine.shape[0]
        self.weight.row_shard = (rank, world_size, num_rows)  # checkpoints save and load it per rank
        self.pending = []  # (every rank's distinct ids, my looked-up vectors) of the step's lookups with gradient
        self.bytes_sent = 0  # per rank, summed over the steps

    def _all_gather(self, tensor, counts):
        self.bytes_sent += max(counts) * int(np.prod(tensor.shape[1:])) * tensor.element_size()
        return all_gather_parts(tensor, counts)

    def forward(self, ids):
        flat = np.asarray(ids.numpy(), dtype=np.int64).reshape(-1)
        mine, inverse = np.unique(flat, return_inverse=True)
        requests = [p.numpy() for p in self._all_gather(paddle.to_tensor(mine), all_gather_counts([len(mine)])[:, 0].tolist())]
        wanted = np.unique(np.concatenate(requests))  # each id once, whoever asked
        owners = wanted % self.world_size
        owned = wanted[owners == self.rank]
        with paddle.no_grad():
            rows = paddle.gather(self.weight, paddle.to_tensor(owned // self.world_size)) if len(owned) \
                else paddle.zeros([0, self.dim], self.weight.dtype)
        served = paddle.concat(self._all_gather(rows, np.bincount(owners, minlength=self.world_size).tolist()))
        # the owners' parts follow rank order, each in id order: where each of my ids came back
        where = np.empty(len(wanted), dtype=np.int64)
        where[np.argsort(owners, kind="stable")] = np.arange(len(wanted))
        vectors = paddle.gather(served, paddle.to_tensor(where[np.searchsorted(wanted, mine)])).detach()
        if paddle.is_grad_enabled() and not self.weight.stop_gradient:
            vectors.stop_gradient = False  # a leaf: the backward leaves my gradient per distinct id on it
            self.pending.append((requests, vectors))
        return F.embedding(paddle.to_tensor(inverse.reshape(ids.shape)), vectors)

    def exchange_gradients(self, scale):
        """After the backward: every rank's gradient rows of the step's lookups to their owners,
        summed, times ``scale``, as this shard's (row-sparse) gradient."""
        ids, grads = [], []
        for requests, vectors in self.pending:
            grad = vectors.grad if vectors.grad is not None else paddle.zeros_like(vectors)
            for requested, part in zip(requests, self._all_gather(grad, [len(r) for r in requests])):
                mask = requested % self.world_size == self.rank
                if mask.any():
                    ids.append(requested[mask] // self.world_size)
                    grads.append(part.numpy()[mask])
        self.pending = []
        if not ids:
            return
        local, summed = sum_rows(np.concatenate(ids), np.concatenate(grads))
        set_row_gradient(self.weight, local, summed * scale, sparse=self._sparse)

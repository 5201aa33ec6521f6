"""Data parallel for models with row-sparse embedding gradients (``sparse_gradients: true``) or
row-sharded tables (``runner.embedding_sharding: row``, models.common.sharding).

paddle.DataParallel all-reduces dense gradients: a whole embedding table per step (DeepFM's
840k x 17 floats: 57 MB). ``SparseExchange`` instead sends, after each backward, only what the
ranks touched: every row-sparse gradient is merged locally (one row per distinct id), then the
ranks all-gather their ids and rows - gloo has all-gather but no all-to-all, so each rank's part
is padded to the largest and cut back after - and each rank rebuilds the same row-sparse gradient
of all ranks' rows. A row-sharded table sends its gradient rows to their owners instead (its
``exchange_gradients``). Dense gradients are all-reduced. All are averaged over the ranks (each
rank's loss is the mean of its own rows), so every replica then runs the same optimizer step -
for the tables, the lazy update of the gathered rows - and the replicas stay equal, as
single-process training on the union of the ranks' batches (up to summation order).
"""
import contextlib
import itertools
import time

import numpy as np
import paddle
import paddle.distributed as dist

from models.common.sharding import (ShardedTable, all_gather_counts, all_gather_parts, row_sharding,
                                    set_row_gradient, sharded_tables, sum_rows)
from tools.utils.config import ConfigError


_barriers = itertools.count()


def wait_for_all_ranks():
    """A barrier that waits as long as it takes - for rank 0 to write a checkpoint of a large table,
    say. paddle.distributed.barrier() on gloo gives up after gloo's default 30 s (paddle passes no
    timeout for gloo), which killed 2-rank DeepFM with the full Criteo vocabulary while rank 0
    saved its 4 GB of state. The ranks count in on the launcher's TCP store instead."""
    store = paddle.base.core.create_or_get_global_tcp_store()
    key = f"rec-barrier-{next(_barriers)}"  # every rank calls in the same order: the same keys
    store.add(key, 1)
    while store.add(key, 0) < dist.get_world_size():
        time.sleep(0.02)


def create_model(ctx):
    """The model of ``ctx``'s config; its tables row-sharded over the ranks with runner.embedding_sharding=row."""
    sharded = ctx.config.get("runner.embedding_sharding") == "row"
    if sharded and ctx.world_size == 1:
        ctx.log("runner.embedding_sharding=row with one process: its tables are whole")
    with row_sharding(ctx.rank, ctx.world_size) if sharded and ctx.world_size > 1 else contextlib.nullcontext():
        return ctx.dygraph_model.create_model(ctx.config)


def distribute(ctx, model):
    """-> (the model to train, the step's gradient exchange or None) for ``ctx``'s ranks: row-sparse
    or row-sharded tables exchange only the rows a step touched (``SparseExchange``); other models
    go through paddle's DataParallel all-reduce."""
    if ctx.world_size == 1:
        return model, None
    if ctx.config.get("runner.embedding_sharding") == "row" and not sharded_tables(model):
        raise ConfigError("runner.embedding_sharding=row: this model has no table of the shared embedding "
                          "stage (models.common.embedding) to shard")
    if has_row_sparse_tables(model):
        exchange = SparseExchange(model, ctx.world_size)
        if exchange.tables:
            rows = sum(t.weight.shape[0] for t in exchange.tables)
            ctx.log(f"data parallel: tables row-sharded over {ctx.world_size} ranks ({rows} rows on this rank), "
                    f"row-sparse gradient exchange")
        else:
            ctx.log(f"data parallel: row-sparse gradient exchange over {ctx.world_size} ranks")
        return model, exchange
    model = paddle.DataParallel(model)
    size = sum(p.numel().item() * p.element_size() for p in model.parameters() if not p.stop_gradient)
    ctx.log(f"data parallel: all-reduce of every gradient, {size / 2 ** 20:.3f} MB sent per step and rank")
    return model, None


def has_row_sparse_tables(model):
    """Does any embedding of ``model`` produce row-sparse gradients, or hold a row shard?"""
    return any(getattr(layer, "_sparse", False) for layer in model.sublayers(include_self=True)) \
        or bool(sharded_tables(model))


class SparseExchange:
    """Call after ``loss.backward()`` and before ``optimizer.step()`` on every rank.

    Per step: one all-reduce of the dense gradients (a ring: 2 (N - 1) / N of them sent per rank,
    where an all-gather would deliver N - 1 copies); with row-sparse tables, an all-gather of each
    rank's merged row count per table (the first sync point: the faster rank waits there for the
    slower), then per table an all-gather of the distinct ids and their summed rows, padded to the
    longest.
    """

    def __init__(self, model, world_size):
        self.model, self.world_size = model, world_size
        self.tables = sharded_tables(model)  # row-sharded: each rank's own rows, exchanged by the table
        sparse = {id(layer.weight) for layer in model.sublayers(include_self=True)
                  if getattr(layer, "_sparse", False) and not isinstance(layer, ShardedTable)}
        self.row_sparse = [p for p in self.replicated() if id(p) in sparse]
        self.dense = [p for p in self.replicated() if id(p) not in sparse]
        self._bytes_sent = 0
        self.steps = 0
        for p in self.replicated():  # one starting point on every rank
            dist.broadcast(p, src=0)

    def replicated(self):
        """The parameters every rank holds whole (all but the row shards)."""
        shards = {id(t.weight) for t in self.tables}
        return [p for p in self.model.parameters() if id(p) not in shards]

    @property
    def bytes_sent(self):
        """Per rank, summed over the steps (lookups of sharded tables included): what the benchmark reports."""
        return self._bytes_sent + sum(t.bytes_sent for t in self.tables)

    def __call__(self):
        scale = 1.0 / self.world_size
        for table in self.tables:
            table.exchange_gradients(scale)
        row_sparse = [p for p in self.row_sparse if not p.stop_gradient]
        dense = [p for p in self.dense if not p.stop_gradient]
        grads = [p._grad_ivar() for p in dense]
        for p, g in zip(dense, grads):
            if g is not None and g.is_selected_rows():  # looked up outside a sparse embedding layer
                raise RuntimeError(f"data parallel: parameter {p.name} has a row-sparse gradient but is not the "
                                   f"weight of a sparse embedding layer, whose rows the exchange sends")
        merged = [merged_rows(p) for p in row_sparse]  # one row per distinct id is sent
        counts = all_gather_counts([len(ids) for ids, _ in merged]) if row_sparse \
            else np.zeros([self.world_size, 0], dtype=np.int64)  # [ranks, tables]
        if dense:  # one all-reduce of all of them (gloo's latency per call is ~1.5 ms) and of a 1 per
            # gradient a rank has: which ones any rank has
            with paddle.no_grad():  # gradients, not graph nodes
                flat = paddle.concat([(paddle.zeros(p.shape, p.dtype) if g is None else g).reshape([-1])
                                      for p, g in zip(dense, grads)]
                                     + [paddle.to_tensor([float(g is not None) for g in grads], dense[0].dtype)])
                dist.all_reduce(flat)
                self._bytes_sent += flat.numel().item() * flat.element_size()
                parts = paddle.split(flat * scale, [int(np.prod(p.shape)) for p in dense] + [len(dense)])
            for p, g, part, anyone in zip(dense, grads, parts, parts[-1].numpy() > 0):
                if g is not None:
                    with paddle.no_grad():
                        g.copy_(part.reshape(g.shape), False)
                elif anyone:  # unused here, used on another rank: its average reaches this replica too
                    (p * part.reshape(p.shape)).sum().backward()
        for p, (ids, rows), per_rank in zip(row_sparse, merged, counts.T):
            self._exchange_rows(p, ids, rows, per_rank, scale)
        self.steps += 1

    def _exchange_rows(self, p, ids, rows, counts, scale):
        """All ranks' merged rows of table ``p`` (``counts`` of them per rank) as its gradient."""
        if not counts.max():
            return
        id_width = 8 // rows.itemsize  # each id's int64 as floats before its row
        packed = np.concatenate([ids.view(rows.dtype).reshape(-1, id_width), rows], axis=1)
        parts = [part.numpy() for part in all_gather_parts(paddle.to_tensor(packed), counts.tolist())]
        self._bytes_sent += counts.max() * packed.shape[1] * packed.itemsize  # padded to the longest
        all_ids = np.concatenate([np.ascontiguousarray(part[:, :id_width]).view(np.int64).reshape(-1)
                                  for part in parts])
        all_rows = np.concatenate([part[:, id_width:] for part in parts])
        # Merged again over the ranks (ascending runs, one per rank): lazy Adam merges repeated
        # rows itself, slower (38 against 15 ms a step)
        all_ids, all_rows = sum_rows(all_ids, all_rows)
        set_row_gradient(p, all_ids, all_rows * scale)


def merged_rows(param):
    """(distinct ids ascending, their summed rows) of ``param``'s row-sparse gradient, as numpy."""
    grad = param._grad_ivar()
    if grad is None:
        return np.zeros(0, dtype=np.int64), paddle.zeros([0, param.shape[1]], param.dtype).numpy()
    rows = grad.rows()
    return sum_rows(np.fromiter(rows, np.int64, len(rows)), grad._get_tensor_from_selected_rows().numpy())

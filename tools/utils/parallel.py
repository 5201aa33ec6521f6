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

from models.common.sharding import (all_gather_counts, all_gather_parts, row_sharding, set_row_gradient,
                                    sharded_tables, sum_rows)
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
    """Call after ``loss.backward()`` and before ``optimizer.step()`` on every rank."""

    def __init__(self, model, world_size):
        self.model, self.world_size = model, world_size
        self.tables = sharded_tables(model)  # row-sharded: each rank's own rows, exchanged by the table
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
        dense = []
        for p in self.replicated():
            grad = p._grad_ivar()
            if grad is None:
                continue
            if grad.is_selected_rows():
                self._exchange_rows(p, grad, scale)
            else:
                dense.append(grad)
        if dense:  # one all-reduce of all of them: gloo's latency per call is ~1.5 ms
            flat = paddle.concat([g.reshape([-1]) for g in dense])
            dist.all_reduce(flat)
            self._bytes_sent += flat.numel().item() * flat.element_size()
            with paddle.no_grad():  # gradients, not graph nodes
                for g, part in zip(dense, paddle.split(flat * scale, [g.numel().item() for g in dense])):
                    g.copy_(part.reshape(g.shape), False)
        self.steps += 1

    def _exchange_rows(self, p, grad, scale):
        ids, summed = sum_rows(grad.rows(), grad._get_tensor_from_selected_rows())  # one row per id sent
        counts = all_gather_counts(len(ids))
        # one message: each id's 8 bytes as two float32 columns before its row
        packed = paddle.concat([paddle.to_tensor(ids.view(np.float32).reshape(-1, 2)), summed], axis=1)
        gathered = paddle.concat(all_gather_parts(packed, counts))
        self._bytes_sent += max(counts) * packed.shape[1] * packed.element_size()
        # merged again over the ranks: lazy Adam merges repeated rows itself, slower (38 against 15 ms a step)
        all_ids, rows = sum_rows(np.ascontiguousarray(gathered[:, :2].numpy()).view(np.int64).reshape(-1),
                                 gathered[:, 2:])
        set_row_gradient(p, all_ids, rows * scale)

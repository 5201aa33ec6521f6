"""Data parallel on CPU: 2 processes via paddle.distributed.launch (gloo)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pandas as pd
import pytest

from tests.conftest import REPO

TINY = os.path.join(REPO, "tests", "fixtures", "tiny_model", "config.yaml")


def write_tiny_data(folder, rows, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    x = rng.normal(size=(rows, 4))
    frame = pd.DataFrame({"id": np.arange(rows), "label": (x[:, 0] + x[:, 1] > 0).astype(int)})
    for i in range(4):
        frame[f"x{i + 1}"] = x[:, i].round(5)
    frame.iloc[: rows // 2].to_csv(os.path.join(folder, "a.csv"), index=False)
    frame.iloc[rows // 2:].to_csv(os.path.join(folder, "b.csv"), index=False)


def launch_script(tmp_path, script_args, logs="logs", fails=False):
    """``script_args`` (a script and its arguments) on 2 launched CPU ranks -> {rank: its log};
    asserts it succeeded (or, with ``fails``, that it failed)."""
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
               str(tmp_path / logs), *script_args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    text = {r: open(tmp_path / logs / f"workerlog.{r}").read() for r in (0, 1)}
    assert (result.returncode != 0) == fails, result.stdout[-3000:] + "".join(t[-3000:] for t in text.values())
    return text


def launch(tmp_path, config, overrides, logs="logs", fails=False):
    """tools/trainer.py on 2 launched CPU ranks (launch_script)."""
    return launch_script(tmp_path, [os.path.join(REPO, "tools", "trainer.py"), "-m", config, "-o",
                                    "runner.use_fleet=true", *overrides], logs, fails)


def test_two_cpu_ranks_stay_in_sync_and_share_the_data(tmp_path):
    write_tiny_data(tmp_path / "data", 101)  # odd: ranks get 51 and 50 rows
    trace = tmp_path / "trace"
    trace.mkdir()
    logs = launch(tmp_path, TINY, [f"runner.train_data_dir={tmp_path / 'data'}",
                                   f"runner.model_save_path={tmp_path / 'ckpt'}", "runner.epochs=1",
                                   f"hyper_parameters.trace_dir={trace}"])
    # Together the ranks trained on every row exactly once, in the same number of steps.
    seen = {r: [list(map(int, l.split())) for l in open(trace / f"rank{r}.txt")] for r in (0, 1)}
    assert len(seen[0]) == len(seen[1])
    all_ids = sorted(i for r in (0, 1) for batch in seen[r] for i in batch)
    assert all_ids == list(range(101))
    # Gradients were all-reduced: both ranks end with the same parameters, which rank 0 saved.
    digests = {r: re.search(r"final parameter digest: (\w+)", logs[r]).group(1) for r in (0, 1)}
    assert digests[0] == digests[1]
    assert "[rank 1]" in logs[1]
    assert os.path.isfile(tmp_path / "ckpt" / "0" / "rec.pdparams")
    saved = paddle.load(str(tmp_path / "ckpt" / "0" / "rec.pdparams"))
    assert set(saved) == {"linear.weight", "linear.bias"}
    # The epoch's figures are over both shards (51 + 50 rows), the same on each rank.
    done = {r: re.search(r"epoch 0 done: (.*?), seconds", logs[r]).group(1) for r in (0, 1)}
    assert done[0] == done[1] and "samples: 101" in done[0]
    assert json.load(open(tmp_path / "ckpt" / "metrics.json"))["train"][0]["samples"] == 101


def deepfm_overrides(tmp_path, epochs=2):
    from tests.conftest import write_criteo_like

    if not (tmp_path / "data").exists():
        write_criteo_like(tmp_path / "data", 512, seed=3)
    return [f"runner.train_data_dir={tmp_path / 'data'}", f"runner.epochs={epochs}", "runner.train_batch_size=64",
            "runner.shuffle=false", "hyper_parameters.sparse_feature_number=1000", "hyper_parameters.fc_sizes=[32,16]",
            "hyper_parameters.sparse_gradients=true", "hyper_parameters.optimizer.lazy_mode=true",
            f"runner.data_cache_dir={tmp_path / 'cache'}"]


def assert_equals_one_process_on_the_union(tmp_path, overrides, checkpoint, epochs=2):
    """One process trained on each step's two rank batches together ends where ``checkpoint`` (2 ranks) did."""
    from models.common.data.loader import create_dataset, plan_batches, to_tensors
    from models.common.loading import load_reader
    from tests.conftest import DEEPFM_CONFIG
    from tools.utils.checkpoint import load_checkpoint
    from tools.utils.runtime import parse_args, setup, train_step

    ctx = setup(parse_args("test", ["-m", DEEPFM_CONFIG, "-o", f"runner.model_save_path={tmp_path / 'one'}",
                                    *overrides]), distributed=False)
    dm, config = ctx.dygraph_model, ctx.config
    model = dm.create_model(config)
    optimizer = dm.create_optimizer(model, config)
    metrics, _ = dm.create_metrics("train")
    rows = create_dataset(load_reader(config, "train"), config, "train")
    for epoch in range(epochs):
        plans = [plan_batches(len(rows), 64, epoch, 0, False, rank, 2) for rank in (0, 1)]
        for a, b in zip(*plans):
            assert len(a) == len(b) == 64
            train_step(dm, model, optimizer, metrics, to_tensors(rows.take(np.concatenate([a, b]))), config)
    distributed = dm.create_model(config)
    load_checkpoint(str(checkpoint), epochs - 1, distributed)  # row shards: re-assembled into whole tables
    for (name, p), q in zip(model.named_parameters(), distributed.parameters()):
        np.testing.assert_allclose(q.numpy(), p.numpy(), atol=2e-6, rtol=1e-4, err_msg=name)


def test_row_sparse_exchange_equals_one_process_on_the_union_of_the_batches(tmp_path):
    """DeepFM with row-sparse tables and lazy Adam on 2 ranks: only touched rows are exchanged,
    and the result is single-process training on each step's two rank batches together."""
    from tests.conftest import DEEPFM_CONFIG

    overrides = deepfm_overrides(tmp_path)
    logs = launch(tmp_path, DEEPFM_CONFIG, [f"runner.model_save_path={tmp_path / 'ckpt'}", *overrides])
    assert "row-sparse gradient exchange over 2 ranks" in logs[0]
    digests = {r: re.search(r"final parameter digest: (\w+)", logs[r]).group(1) for r in (0, 1)}
    assert digests[0] == digests[1]  # the replicas are bit-equal
    assert_equals_one_process_on_the_union(tmp_path, overrides, tmp_path / "ckpt")
    # whole tables cannot continue as row shards (the Adam moments would not fit)
    logs = launch(tmp_path, DEEPFM_CONFIG, [f"runner.model_save_path={tmp_path / 'ckpt'}", *overrides,
                                            "runner.resume=true", "runner.epochs=3", "runner.embedding_sharding=row"],
                  logs="logs_resume", fails=True)
    assert "holds whole tables; this run row-shards them" in logs[0]
    assert not os.path.isdir(tmp_path / "ckpt" / "2")


def test_row_sharded_tables_train_as_one_process_and_resume_exactly(tmp_path):
    """runner.embedding_sharding=row: each rank holds half of DeepFM's table and its Adam moments;
    two epochs equal one process on the union of the batches; one epoch then a resumed one equal
    the two in one go, bit for bit; another world size is refused."""
    from tests.conftest import DEEPFM_CONFIG
    from tools.utils.runtime import parse_args, setup
    from tools.trainer import train
    from tools.utils.checkpoint import CheckpointError

    overrides = deepfm_overrides(tmp_path) + ["runner.embedding_sharding=row"]
    logs = launch(tmp_path, DEEPFM_CONFIG, [f"runner.model_save_path={tmp_path / 'ckpt'}", *overrides])
    assert "tables row-sharded over 2 ranks" in logs[0]
    epoch = tmp_path / "ckpt" / "1"
    assert json.load(open(epoch / "sharding.json"))["world_size"] == 2
    (table, (total, _)), = json.load(open(epoch / "sharding.json"))["tables"].items()  # DeepFM's one fused table
    rows = {r: paddle.load(str(epoch / f"rows-{r}.pdparams")) for r in (0, 1)}
    assert [rows[r][table].shape[0] for r in (0, 1)] == [(total + 1) // 2, total // 2]  # half each
    assert table not in paddle.load(str(epoch / "rec.pdparams"))  # no rank writes the whole table
    moments = paddle.load(str(epoch / "rows-1.pdopt"))
    assert moments and all(v.shape[0] in (1, total // 2) for v in moments.values())
    assert_equals_one_process_on_the_union(tmp_path, overrides[:-1], tmp_path / "ckpt")

    # exact resume: epoch 0, then epoch 1 resumed, ends bit-equal to the uninterrupted run
    first = [f"runner.model_save_path={tmp_path / 'parts'}", *overrides]
    launch(tmp_path, DEEPFM_CONFIG, first + ["runner.epochs=1"], logs="logs_a")
    resumed = launch(tmp_path, DEEPFM_CONFIG, first + ["runner.resume=true"], logs="logs_b")
    assert "continuing at epoch 1" in resumed[0]
    for name in ("rec.pdparams", "rows-0.pdparams", "rows-1.pdparams", "rows-0.pdopt", "rows-1.pdopt"):
        a, b = paddle.load(str(epoch / name)), paddle.load(str(tmp_path / "parts" / "1" / name))
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"{name} {key}")

    # another world size (here one process) cannot continue the sharded optimizer state
    ctx = setup(parse_args("test", ["-m", DEEPFM_CONFIG, "-o", f"runner.model_save_path={tmp_path / 'parts'}",
                                    *overrides[:-1], "runner.resume=true", "runner.epochs=3"]), distributed=False)
    with pytest.raises(CheckpointError, match="row-sharded over 2 ranks: resume it with 2 processes"):
        train(ctx)


def test_data_parallel_benchmark_reports_every_setting(tmp_path):
    """benchmarks/data_parallel.py, tiny: seven settings run, bytes logged for the 2-process ones, memory for all."""
    from tests.conftest import DEEPFM_CONFIG, write_criteo_like

    write_criteo_like(tmp_path / "data", 512, seed=4)
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from data_parallel import main as bench_main

    table = bench_main(["-m", DEEPFM_CONFIG, "--data", str(tmp_path / "data"), "--rounds", "1", "-o",
                        "hyper_parameters.sparse_feature_number=100000", "hyper_parameters.fc_sizes=[32,16]",
                        "runner.train_batch_size=64", f"runner.data_cache_dir={tmp_path / 'cache'}"])
    assert set(table) == {f"{g} {l}" for g in ("dense", "sparse") for l in ("1x1", "1x2", "2x1")} | {"sharded 2x1"}
    for key, row in table.items():
        assert row["runs"][0]["rows"] == 512 and row["rows_per_s"] > 0
        assert (row["mb_per_step"] is not None) == key.endswith("2x1")
        assert row["peak_rss_anon_mb"] > 50  # a paddle process was sampled
    # the dense all-reduce sends every gradient, the exchange only what a step touched (+ the dense layers)
    assert table["sparse 2x1"]["mb_per_step"] < table["dense 2x1"]["mb_per_step"] / 10  # 1000 ids of a 100k table
    assert table["sharded 2x1"]["mb_per_step"] < table["dense 2x1"]["mb_per_step"] / 10


def test_the_step_profiler_times_the_exchange_or_leaves_it_out(tmp_path):
    """benchmarks/profile_step.py: one process times forward, backward and optimizer; 2 launched
    ranks with row-sparse tables also the exchange, and with --no-exchange the maths alone (the
    bound the exchange is measured against)."""
    from tests.conftest import DEEPFM_CONFIG, write_criteo_like

    write_criteo_like(tmp_path / "data", 512, seed=5)
    command = [os.path.join(REPO, "benchmarks", "profile_step.py"), "-m", DEEPFM_CONFIG, "--data",
               str(tmp_path / "data"), "--batch-size", "64", "--warmup", "1", "--steps", "2", "-o",
               "hyper_parameters.sparse_feature_number=100000", "hyper_parameters.sparse_gradients=true",
               "hyper_parameters.optimizer.lazy_mode=true", f"runner.data_cache_dir={tmp_path / 'cache'}"]
    results = {}
    one = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert one.returncode == 0, one.stderr[-3000:]
    results["1"] = [json.loads(one.stdout.strip().splitlines()[-1])]
    for name, extra in (("2", []), ("2 bound", ["--no-exchange"])):
        logs = launch_script(tmp_path, [*command, "runner.use_fleet=true", *extra], logs=name.replace(" ", "_"))
        results[name] = [json.loads(re.findall(r"^\{.*\}$", logs[r], re.M)[-1]) for r in (0, 1)]
    for name, ranks in results.items():
        for rank, result in enumerate(ranks):
            phases = result["median_ms"]
            assert result["rank"] == rank and result["world_size"] == (1 if name == "1" else 2)
            assert result["exchange"] == (name == "2") and ("exchange" in phases) == (name == "2")
            assert {"forward+loss", "backward", "optimizer", "infer forward"} <= set(phases)
            assert phases["train step"] == pytest.approx(sum(v for k, v in phases.items()
                                                             if k not in ("train step", "infer forward")), abs=0.02)


@pytest.mark.parametrize("init", [("normal", 0.1), ("truncated_normal", 0.05), "xavier_uniform"])
def test_a_row_shard_starts_as_its_rows_of_the_whole_table(monkeypatch, init):
    """Each rank draws the whole table block by block and keeps its rows: the same values as one
    process's table, and the random stream after it (the next parameters) is the same too."""
    import models.common.sharding as sharding
    from models.common.embedding import FeatureEmbedding
    from models.common.features import SparseFeature

    monkeypatch.setattr(sharding, "INIT_BLOCK_ROWS", 7)  # blocks that do not divide the ranks' stride
    features = [SparseFeature("a", 23, 4), SparseFeature("b", 18, 4)]

    def build(rank=None):
        paddle.seed(11)
        if rank is None:
            table = FeatureEmbedding(features, init=init).table.weight.numpy()
        else:
            with sharding.row_sharding(rank, 3):
                table = FeatureEmbedding(features, init=init).table.weight.numpy()
        return table, paddle.rand([5]).numpy()

    whole, after = build()
    for rank in range(3):
        shard, shard_after = build(rank)
        np.testing.assert_array_equal(shard, whole[rank::3])
        np.testing.assert_array_equal(shard_after, after)


def test_a_sharded_table_refuses_whole_table_readers_and_loads_pretrained_rows_it_owns():
    from models.common.embedding import FeatureEmbedding
    from models.common.features import SparseFeature
    from models.common.sharding import row_sharding

    with row_sharding(1, 2):
        embedding = FeatureEmbedding([SparseFeature("item", 10, 3)])
    with pytest.raises(ValueError, match="reads its whole embedding table.*embedding_sharding=none"):
        embedding.weight
    before = embedding.table.weight.numpy()
    embedding.load_rows("item", [2, 3, 7], np.arange(9, dtype="float32").reshape(3, 3))
    after = embedding.table.weight.numpy()
    np.testing.assert_array_equal(after[[1, 3]], [[3, 4, 5], [6, 7, 8]])  # rows 3 and 7: local 1 and 3
    np.testing.assert_array_equal(np.delete(after, [1, 3], axis=0), np.delete(before, [1, 3], axis=0))
    with pytest.raises(ValueError, match="needs whole tables"):
        embedding.load_rows("item", [3], np.zeros((1, 3), "float32"), freeze=True)


def test_row_sharding_is_refused_without_data_parallel_or_without_a_shared_table(tmp_path):
    from tests.conftest import DEEPFM_CONFIG
    from tools.utils.config import ConfigError
    from tools.utils.runtime import parse_args, setup

    with pytest.raises(ConfigError, match="embedding_sharding=row .* needs runner.use_fleet=true"):
        setup(parse_args("test", ["-m", DEEPFM_CONFIG, "-o", "runner.embedding_sharding=row"]), distributed=False)
    write_tiny_data(tmp_path / "data", 40)  # a linear model: no embedding table to shard
    logs = launch(tmp_path, TINY, ["runner.embedding_sharding=row", f"runner.train_data_dir={tmp_path / 'data'}",
                                   f"runner.model_save_path={tmp_path / 'ckpt'}", "runner.epochs=1"], fails=True)
    assert "this model has no table of the shared embedding stage" in logs[0]
    assert not os.path.isdir(tmp_path / "ckpt" / "0")


@pytest.mark.parametrize("vocab,layout", [(7, "random"), (1000, "random"), (2 ** 62, "random"), (1000, "runs"),
                                          (2 ** 40, "ascending")])
def test_rows_of_repeated_ids_are_summed_in_their_order(vocab, layout):
    """The merge before every row exchange: one row per distinct id (ascending), each the sum of
    that id's rows taken in the order they came (the same bits on every rank). Each sort path:
    random ids (the largest take the stable sort), a few ascending runs (the ranks' merged rows)
    and rows already distinct and ascending (returned as they are)."""
    from models.common.sharding import sum_rows
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, 3000, dtype=np.int64)
    if layout == "runs":
        ids = np.concatenate([np.unique(part) for part in np.split(ids, [900, 2000])])
    elif layout == "ascending":
        ids = np.unique(ids)
    rows = rng.standard_normal((len(ids), 4)).astype(np.float32)
    got_ids, got = sum_rows(ids, rows)
    assert (got_ids == np.unique(ids)).all()
    for i, id_ in enumerate(got_ids):
        expected = np.zeros(4, dtype=np.float32)
        for row in rows[ids == id_]:
            expected = expected + row
        assert np.array_equal(got[i], expected), id_
    empty_ids, empty = sum_rows(np.zeros(0, dtype=np.int64), rows[:0])
    assert len(empty_ids) == 0 and empty.shape == (0, 4)


EXCHANGE_SCRIPT = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, paddle, paddle.distributed as dist
from models.common.embedding import RowSparseEmbedding
from tools.utils.parallel import SparseExchange

class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.table = RowSparseEmbedding(12, 3)
        self.used = paddle.nn.Linear(3, 1)
        self.rank0_only = paddle.nn.Linear(3, 1)  # no gradient on rank 1
        self.unused = paddle.nn.Linear(3, 1)  # no gradient anywhere

def loss(net, rank):
    ids = paddle.to_tensor([[1, 5, 5], [7, 1, 2]] if rank == 0 else [[5, 9, 9], [11, 0, 9]])
    h = net.table(ids).mean(axis=1)
    out = net.used(h) + (net.rank0_only(h) if rank == 0 else 0)
    return (out ** 2).mean()

def grads(net):
    out = {}
    for name, p in net.named_parameters():
        g = p._grad_ivar()
        if g is not None and g.is_selected_rows():
            dense = np.zeros(p.shape, np.float32)
            np.add.at(dense, np.array(g.rows()), g._get_tensor_from_selected_rows().numpy())
            g = dense
        out[name] = None if g is None else np.asarray(g).tolist()
    return out

dist.init_parallel_env()
rank = dist.get_rank()
paddle.seed(0)
net = Net()
reference = Net()
reference.set_state_dict(net.state_dict())
exchange = SparseExchange(net, 2)
loss(net, rank).backward()
exchange()
# one process on both ranks' batches: the mean of the two losses
((loss(reference, 0) + loss(reference, 1)) / 2).backward()
print("GRADS " + json.dumps({"exchanged": grads(net), "reference": grads(reference)}), flush=True)
'''


def test_the_exchange_averages_every_gradient_some_rank_has(tmp_path):
    """After the exchange every rank holds the gradient of one process on the union of the batches:
    the rows of a row-sparse table, a layer only rank 0 used (rank 1 has no gradient of its own
    for it) and none for a layer no rank used (Adam must skip it, as in one process)."""
    script = tmp_path / "exchange.py"
    script.write_text(EXCHANGE_SCRIPT)
    logs = launch_script(tmp_path, [str(script), REPO]).values()
    got = [json.loads(re.search(r"GRADS (.*)", log).group(1)) for log in logs]
    assert got[0]["exchanged"] == got[1]["exchanged"]  # the same bits on both ranks
    exchanged, reference = got[0]["exchanged"], got[0]["reference"]
    assert exchanged["unused.weight"] is None and reference["unused.weight"] is None
    assert exchanged["rank0_only.weight"] is not None
    for name, expected in reference.items():
        if expected is not None:
            np.testing.assert_allclose(exchanged[name], expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_the_barrier_waits_as_long_as_the_slowest_rank_takes(monkeypatch):
    """``wait_for_all_ranks`` (checkpoints of large tables: rank 0 may save for minutes) counts the
    ranks in on the launcher's store and never gives up - paddle's own barrier on gloo dies after
    30 s. Here rank 1 calls in after 45 s (a fake store and clock); each barrier has its own key."""
    import tools.utils.parallel as parallel
    clock = [0.0]

    class Store:
        def __init__(self):
            self.counts = {}

        def add(self, key, value):
            if value == 0 and clock[0] >= 45 and key not in arrived:  # the slow rank calls in
                arrived.add(key)
                self.counts[key] += 1
            self.counts[key] = self.counts.get(key, 0) + value
            return self.counts[key]

    store, arrived = Store(), set()
    monkeypatch.setattr(paddle.base.core, "create_or_get_global_tcp_store", lambda: store)
    monkeypatch.setattr(parallel.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(parallel.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    parallel.wait_for_all_ranks()
    assert clock[0] >= 45 and len(store.counts) == 1 and list(store.counts.values()) == [2]
    parallel.wait_for_all_ranks()  # a second barrier: a new key, counted from 0
    assert len(store.counts) == 2 and list(store.counts.values()) == [2, 2]

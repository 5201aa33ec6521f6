"""Data parallel on CPU: 2 processes via paddle.distributed.launch (gloo)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pandas as pd

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


def test_two_cpu_ranks_stay_in_sync_and_share_the_data(tmp_path):
    write_tiny_data(tmp_path / "data", 101)  # odd: ranks get 51 and 50 rows
    trace = tmp_path / "trace"
    trace.mkdir()
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(tmp_path / "logs"), os.path.join(REPO, "tools", "trainer.py"), "-m", TINY,
               "-o", "runner.use_fleet=true", f"runner.train_data_dir={tmp_path / 'data'}",
               f"runner.model_save_path={tmp_path / 'ckpt'}", "runner.epochs=1", f"hyper_parameters.trace_dir={trace}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    logs = {r: open(tmp_path / "logs" / f"workerlog.{r}").read() for r in (0, 1)}
    assert result.returncode == 0, result.stdout[-3000:] + logs[0][-3000:] + logs[1][-3000:]
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


def test_row_sparse_exchange_equals_one_process_on_the_union_of_the_batches(tmp_path):
    """DeepFM with row-sparse tables and lazy Adam on 2 ranks: only touched rows are exchanged,
    and the result is single-process training on each step's two rank batches together."""
    from models.common.data.loader import create_dataset, plan_batches, to_tensors
    from models.common.loading import load_reader
    from tests.conftest import DEEPFM_CONFIG, write_criteo_like
    from tools.utils.checkpoint import load_checkpoint
    from tools.utils.runtime import parse_args, setup, train_step

    write_criteo_like(tmp_path / "data", 512, seed=3)
    overrides = [f"runner.train_data_dir={tmp_path / 'data'}", "runner.epochs=2", "runner.train_batch_size=64",
                 "runner.shuffle=false", "hyper_parameters.sparse_feature_number=1000", "hyper_parameters.fc_sizes=[32,16]",
                 "hyper_parameters.sparse_gradients=true", "hyper_parameters.optimizer.lazy_mode=true",
                 f"runner.data_cache_dir={tmp_path / 'cache'}"]
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
               str(tmp_path / "logs"), os.path.join(REPO, "tools", "trainer.py"), "-m", DEEPFM_CONFIG, "-o",
               "runner.use_fleet=true", f"runner.model_save_path={tmp_path / 'ckpt'}", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    logs = {r: open(tmp_path / "logs" / f"workerlog.{r}").read() for r in (0, 1)}
    assert result.returncode == 0, result.stdout[-3000:] + logs[0][-3000:] + logs[1][-3000:]
    assert "row-sparse gradient exchange over 2 ranks" in logs[0]
    digests = {r: re.search(r"final parameter digest: (\w+)", logs[r]).group(1) for r in (0, 1)}
    assert digests[0] == digests[1]  # the replicas are bit-equal

    ctx = setup(parse_args("test", ["-m", DEEPFM_CONFIG, "-o", f"runner.model_save_path={tmp_path / 'one'}",
                                    *overrides]), distributed=False)
    dm, config = ctx.dygraph_model, ctx.config
    model = dm.create_model(config)
    optimizer = dm.create_optimizer(model, config)
    metrics, _ = dm.create_metrics("train")
    rows = create_dataset(load_reader(config, "train"), config, "train")
    for epoch in range(2):
        plans = [plan_batches(len(rows), 64, epoch, 0, False, rank, 2) for rank in (0, 1)]
        for a, b in zip(*plans):
            assert len(a) == len(b) == 64
            train_step(dm, model, optimizer, metrics, to_tensors(rows.take(np.concatenate([a, b]))), config)
    distributed = dm.create_model(config)
    load_checkpoint(str(tmp_path / "ckpt"), 1, distributed)
    for (name, p), q in zip(model.named_parameters(), distributed.parameters()):
        np.testing.assert_allclose(q.numpy(), p.numpy(), atol=2e-6, rtol=1e-4, err_msg=name)


def test_data_parallel_benchmark_reports_every_setting(tmp_path):
    """benchmarks/data_parallel.py, tiny: six settings run, bytes logged for the two 2-process ones."""
    from tests.conftest import DEEPFM_CONFIG, write_criteo_like

    write_criteo_like(tmp_path / "data", 512, seed=4)
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from data_parallel import main as bench_main

    table = bench_main(["-m", DEEPFM_CONFIG, "--data", str(tmp_path / "data"), "--rounds", "1", "-o",
                        "hyper_parameters.sparse_feature_number=100000", "hyper_parameters.fc_sizes=[32,16]",
                        "runner.train_batch_size=64", f"runner.data_cache_dir={tmp_path / 'cache'}"])
    assert set(table) == {f"{g} {l}" for g in ("dense", "sparse") for l in ("1x1", "1x2", "2x1")}
    for key, row in table.items():
        assert row["runs"][0]["rows"] == 512 and row["rows_per_s"] > 0
        assert (row["mb_per_step"] is not None) == key.endswith("2x1")
    # the dense all-reduce sends every gradient, the exchange only what a step touched (+ the dense layers)
    assert table["sparse 2x1"]["mb_per_step"] < table["dense 2x1"]["mb_per_step"] / 10  # 1000 ids of a 100k table

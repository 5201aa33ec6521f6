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

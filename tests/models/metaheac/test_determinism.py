"""MetaHeac end to end is bit-reproducible: the shipped sample config (models/multitask/metaheac/
config.yaml, all of it: 710 meta-steps of 5 tasks x 32 rows, then fine-tune-and-test on every hot
and cold ad) trained twice in separate processes gives the same parameters, and infer_meta gives
the same metrics.

Both runs get the same environment. paddle's CPU math is only reproducible for a fixed one: MKL's
matmul results change with its thread count (OMP_NUM_THREADS unset/1 vs 2 or more) and with its
code path (MKL_DEBUG_CPU_TYPE), so comparing runs made under different settings shows differences
(per-ad AUCs ~2e-4 apart on this sample) that are not run-to-run randomness.

The two runs of each command go in parallel (about 45 s each on 2 cores).
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import paddle

from conftest import REPO

CONFIG = os.path.join(REPO, "models", "multitask", "metaheac", "config.yaml")
INFER_META = os.path.join(REPO, "models", "multitask", "metaheac", "infer_meta.py")


def _start(script, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, script, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _run_both(commands, timeout=900):
    """Start every command, then wait for all of them -> their outputs."""
    procs = [_start(*c) for c in commands]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        outputs.append(out)
    return outputs


def test_full_sample_run_is_bit_reproducible(tmp_path):
    ckpts = [str(tmp_path / f"run{i}") for i in range(2)]
    logs = _run_both([(os.path.join(REPO, "tools", "trainer.py"), "-m", CONFIG, "-o",
                       f"runner.model_save_path={c}") for c in ckpts])
    digests = [re.search(r"final parameter digest: (\w+)", log).group(1) for log in logs]
    params = [paddle.load(os.path.join(c, "0", "rec.pdparams")) for c in ckpts]
    assert params[0].keys() == params[1].keys()
    differing = [k for k in params[0] if not np.array_equal(params[0][k].numpy(), params[1][k].numpy())]
    assert not differing, f"parameters differ between two identical runs: {differing} (digests {digests})"
    assert digests[0] == digests[1]
    train = [json.load(open(os.path.join(c, "metrics.json")))["train"] for c in ckpts]
    assert [(h["loss"], h["auc"], h["samples"]) for h in train[0]] == [(h["loss"], h["auc"], h["samples"]) for h in train[1]]

    _run_both([(INFER_META, "-m", CONFIG, "-o", f"runner.model_save_path={c}", f"runner.infer_load_path={c}",
                f"runner.infer_output_path={c}/infer") for c in ckpts])
    metrics = [json.load(open(os.path.join(c, "infer", "metrics.json"))) for c in ckpts]
    assert metrics[0]["headline"] == metrics[1]["headline"]
    tasks = [pd.read_csv(os.path.join(c, "infer", "tasks_epoch0.csv")).drop(columns="finetune_seconds") for c in ckpts]
    assert len(tasks[0]) == 12
    pd.testing.assert_frame_equal(tasks[0], tasks[1], check_exact=True)

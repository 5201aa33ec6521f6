"""tools/trainer.py and tools/infer.py end to end on DeepFM with small learnable data."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pandas as pd
import pytest

from tests.conftest import DEEPFM_CONFIG, REPO, run_tool


def train(overrides, *extra, cwd=None, config=DEEPFM_CONFIG):
    result = run_tool("tools/trainer.py", "-m", config, "-o", *overrides, *extra, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def infer(overrides, *extra, cwd=None, config=DEEPFM_CONFIG):
    result = run_tool("tools/infer.py", "-m", config, "-o", *overrides, *extra, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def params(path):
    return paddle.load(os.path.join(path, "rec.pdparams"))


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def test_train_then_infer_logs_metrics_and_checkpoints(criteo_run):
    tmp, overrides = criteo_run
    log = train(overrides, "runner.epochs=3", "hyper_parameters.optimizer.learning_rate=0.01")
    # One line per print_interval batches with all the fields, and one per epoch.
    interval_lines = [l for l in log.splitlines() if re.search(r"epoch: \d+, batch: \d+", l)]
    assert len(interval_lines) == 3 * 3  # 600 rows / 64 = 10 batches -> lines at 3, 6, 9
    for field in ("loss:", "auc:", "avg_reader_cost:", "avg_batch_cost:", "ins/s:"):
        assert field in interval_lines[0]
    assert len(re.findall(r"epoch \d+ done", log)) == 3
    for epoch in range(3):
        assert sorted(os.listdir(tmp / "ckpt" / str(epoch))) == ["rec.pdopt", "rec.pdparams"]
    history = json.load(open(tmp / "ckpt" / "metrics.json"))["train"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(h["samples"] == 600 for h in history)
    assert history[-1]["loss"] < history[0]["loss"]  # learnable data: loss goes down
    # Infer evaluates the chosen epochs and writes metrics.json.
    log = infer(overrides, "runner.infer_start_epoch=0", "runner.infer_end_epoch=3")
    assert len(re.findall(r"infer epoch: \d, auc: [0-9.]+, logloss: [0-9.]+", log)) == 3
    result = json.load(open(tmp / "ckpt" / "infer" / "metrics.json"))
    assert [r["epoch"] for r in result["infer"]] == [0, 1, 2]
    assert result["headline"]["auc"] > 0.7  # the click rule is learnable


def test_running_mean_loss_in_log(criteo_run):
    _, overrides = criteo_run
    log = train(overrides, "runner.epochs=1", "runner.print_interval=1")
    losses = [float(x) for x in re.findall(r"batch: \d+, loss: ([0-9.]+)", log)]
    summary = float(re.search(r"epoch 0 done: loss: ([0-9.]+)", log).group(1))
    # The logged loss is the mean since the epoch start: its last value is the epoch mean.
    assert abs(losses[-1] - summary) < 1e-5
    assert len(losses) == 10


def test_prediction_file(criteo_run):
    tmp, overrides = criteo_run
    train(overrides)
    infer(overrides, f"runner.infer_output_path={tmp / 'pred'}")
    frame = pd.read_csv(tmp / "pred" / "predictions_epoch1.csv")
    assert list(frame.columns) == ["index", "click", "prob_click"]
    assert len(frame) == 200 and frame["index"].tolist() == list(range(200))
    assert frame["prob_click"].between(0, 1).all() and set(frame["click"]) == {0, 1}
    labels = [int(line.split()[0].split(":")[1]) for line in open(tmp / "test" / "part-0.txt")]
    assert frame["click"].tolist() == labels
    assert json.load(open(tmp / "pred" / "metrics.json"))["infer"][0]["epoch"] == 1


def test_runs_from_any_directory(criteo_run):
    tmp, overrides = criteo_run
    model_dir = os.path.dirname(DEEPFM_CONFIG)
    # PaddleRec's habit: from the model folder with a relative tools path.
    relative = [o for o in overrides if "data_dir" not in o]  # data dirs: absolute in overrides
    result = run_tool("tools/trainer.py", "-m", "config.yaml", "-o", *overrides, "runner.epochs=1",
                      "runner.infer_start_epoch=0", "runner.infer_end_epoch=1", cwd=model_dir)
    assert result.returncode == 0, result.stderr
    other = tmp / "elsewhere"
    other.mkdir()
    out = infer(relative + [f"runner.test_data_dir={tmp / 'test'}", "runner.infer_start_epoch=0",
                            "runner.infer_end_epoch=1"], cwd=str(other))
    assert "infer epoch: 0" in out


def test_relative_override_paths_follow_cwd(criteo_run):
    tmp, overrides = criteo_run
    train([o for o in overrides if "model_save_path" not in o], "runner.model_save_path=rel_ckpt",
          "runner.epochs=1", cwd=str(tmp))
    assert os.path.isfile(tmp / "rel_ckpt" / "0" / "rec.pdparams")


SHUFFLES = {"global": ["runner.shuffle=true"],
            "block": ["runner.shuffle=block", "runner.shuffle_block_rows=50", "runner.shuffle_window_blocks=3"]}


@pytest.mark.parametrize("shuffle", sorted(SHUFFLES))
def test_same_seed_same_results_and_workers(criteo_run, shuffle):
    tmp, overrides = criteo_run
    overrides = overrides + SHUFFLES[shuffle]
    runs = {}
    for name, workers in (("a", 0), ("b", 0), ("c", 2)):
        train([o for o in overrides if "model_save_path" not in o], f"runner.model_save_path={tmp / name}",
              f"runner.num_workers={workers}")
        runs[name] = (params(tmp / name / "1"), json.load(open(tmp / name / "metrics.json"))["train"])
    for other in ("b", "c"):
        assert_same_params(runs["a"][0], runs[other][0])
        for x, y in zip(runs["a"][1], runs[other][1]):
            assert (x["loss"], x["auc"], x["samples"]) == (y["loss"], y["auc"], y["samples"])


@pytest.mark.parametrize("shuffle", sorted(SHUFFLES))
def test_resume_matches_uninterrupted_run(criteo_run, shuffle):
    tmp, overrides = criteo_run
    base = [o for o in overrides if "model_save_path" not in o] + SHUFFLES[shuffle]
    train(base, f"runner.model_save_path={tmp / 'full'}", "runner.epochs=3")
    train(base, f"runner.model_save_path={tmp / 'resumed'}", "runner.epochs=1")
    log = train(base, f"runner.model_save_path={tmp / 'resumed'}", "runner.epochs=3", "runner.resume=true")
    assert "continuing at epoch 1" in log and "epoch 0 done" not in log
    assert_same_params(params(tmp / "full" / "2"), params(tmp / "resumed" / "2"))
    assert [h["epoch"] for h in json.load(open(tmp / "resumed" / "metrics.json"))["train"]] == [0, 1, 2]


def test_real_criteo_rows_train_and_infer(tmp_path):
    """The shipped config on the shipped real Criteo rows (config.yaml itself points at the
    synthetic sample: tests/models/deepfm/test_sample.py)."""
    data = os.path.join(os.path.dirname(DEEPFM_CONFIG), "data")
    for split in ("train", "test"):
        if not glob.glob(os.path.join(data, split, "*")):
            pytest.fail(f"models/rank/deepfm/data/{split} is missing")
    out = [f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.infer_load_path={tmp_path / 'ckpt'}",
           f"runner.train_data_dir={os.path.join(data, 'train')}", f"runner.test_data_dir={os.path.join(data, 'test')}",
           "hyper_parameters.sparse_feature_number=1000001"]  # their ids are hashed into [0, 1000000]
    log = train(out)
    assert re.search(r"epoch 1 done: loss: [0-9.]+, samples: 85,", log)
    log = infer(out)
    assert re.search(r"infer epoch: 1, auc: [0-9.]+", log)


@pytest.mark.parametrize("vendor, flags, expected", [
    ("AuthenticAMD", "fpu sse avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl", "7"),
    ("AuthenticAMD", "fpu sse avx2 fma avx512f", "5"),  # partial AVX-512 (no BW/DQ/VL): AVX2 kernels
    ("AuthenticAMD", "fpu sse avx2 fma", "5"),
    ("AuthenticAMD", "fpu sse avx", None),  # no AVX2: MKL's default
    ("GenuineIntel", "fpu avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl", None),  # MKL picks itself
])
def test_mkl_code_path_follows_the_cpu_flags(vendor, flags, expected):
    from tools.utils import mkl_code_path

    cpuinfo = f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {flags}\nbugs\t\t: sysret_ss_attrs\n"
    assert mkl_code_path(cpuinfo) == expected


_REFAULT_PROBE = """
import numpy as np
import tools.utils
tools.utils.prepare_process()
def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
np._core.multiarray._set_madvise_hugepage(False)  # 4 KiB pages, as paddle's tensors get
counts = []
for cycle in range(3):  # a step's worth of 8 MiB tensors and a 64 MiB one (a table's dense
    start = faults()    # gradient: above glibc's largest mmap threshold), freed at the step's end
    blocks = [np.ones(2 << 20, dtype=np.float32) for _ in range(10)] + [np.ones(16 << 20, dtype=np.float32)]
    del blocks
    counts.append(faults() - start)
print(counts[0], counts[1] + counts[2])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc are Linux's")
def test_freed_memory_is_reused_without_new_page_faults():
    """After tools.utils.prepare_process(), later 'steps' reuse the first one's pages instead of faulting them in
    again; with glibc's defaults (kept when the user sets a malloc tunable, here one that changes
    nothing) each step faults as many pages as the first."""
    def faults(**env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
        out = subprocess.run([sys.executable, "-c", _REFAULT_PROBE], cwd=REPO, env={**clean, **env},
                             capture_output=True, text=True, check=True).stdout
        return [int(n) for n in out.split()[-2:]]

    first, later = faults()
    assert first > 0 and later < first / 10
    first, later = faults(GLIBC_TUNABLES="glibc.malloc.perturb=0")
    assert later > first  # two more steps, each faulting its pages in again


def test_keep_freed_memory_leaves_a_users_malloc_settings(monkeypatch):
    from tools.utils import MALLOPT_SETTINGS, _keep_freed_memory

    class FakeLibc:
        def __init__(self):
            self.calls = []

        def mallopt(self, param, value):
            self.calls.append((param, value))
            return 1

    for name in [n for n in os.environ if n.startswith("MALLOC_")] + ["GLIBC_TUNABLES"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")  # not a malloc setting
    libc = FakeLibc()
    assert _keep_freed_memory(libc) and libc.calls == list(MALLOPT_SETTINGS)
    for name, value in (("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"), ("MALLOC_ARENA_MAX", "2")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            libc = FakeLibc()
            assert not _keep_freed_memory(libc) and libc.calls == []

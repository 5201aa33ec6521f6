"""Speed of MetaHeac's two expensive loops against PaddleRec-style re-implementations, measured in
the same process at the config's ``benchmark:`` settings (PaddleRec's sample config: full-size
vocabularies, batch 4, 5 tasks, 64-dim embeddings):

- meta-step: row-subset fast weights (ours) vs dense fast weights over the whole table
  (W' = W - lr * dW for every row, as PaddleRec), both followed by the Adam step;
- per-task fine-tuning: in-memory restore + Adam over the task's rows and the dense weights (ours)
  vs re-reading the checkpoint + dense Adam over all parameters (as PaddleRec's infer_meta.py);
- with ``benchmark.paddlerec_code_dir`` (a PaddlePaddle/PaddleRec checkout's
  models/multitask/metaheac folder), PaddleRec's own code as well (its meta-step and its per-task
  fine-tuning), unmodified, in the same interleaved runs.

    python benchmarks/models/metaheac.py -m models/multitask/metaheac/config.yaml [-o benchmark.meta_steps=5]

benchmarks/benchmark.py calls ``run_benchmark(config)`` for MetaHeac's configs.
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
import paddle  # noqa: E402

from benchmarks.baselines.paddlerec_metaheac import (PaddleRecCodeRunner, PaddleRecStyleNet, dense_meta_loss,  # noqa: E402
                                                      paddlerec_code_finetune, paddlerec_finetune, paddlerec_meta_loss)
from models.common.data import list_data_files  # noqa: E402
from models.common.spec import Param, SpecError, positive_int  # noqa: E402
from tools.utils.config import ConfigError  # noqa: E402
from models.common.datasets.lookalike import RecDataset as LookalikeRows  # noqa: E402
from models.common.meta_model import Task, TaskEvaluator, TaskSampler, TestTasks, meta_loss  # noqa: E402
from models.multitask.metaheac.dygraph_model import DygraphModel  # noqa: E402
from models.common.datasets.lookalike import AD, DYNAMIC, STATIC, schema  # noqa: E402
from models.multitask.metaheac.net import MetaHeacLayer  # noqa: E402

def _bench(**params):
    return {f"benchmark.{name}": param for name, param in params.items()}


# The benchmark: section of MetaHeac's configs.
BENCHMARK_SPEC = _bench(
    max_idxs=Param(list, required=False, help="vocabularies of the timed tables (default: hyper_parameters.max_idxs)"),
    batch_size=positive_int(default=4, help="meta-step support / query size"),
    task_count=positive_int(default=5, help="tasks per meta-step"),
    meta_steps=positive_int(default=3, help="timed meta-steps (after one warm-up step)"),
    finetune_tasks=positive_int(default=2, help="timed tasks per fine-tuning method"),
    finetune_seed_rows=positive_int(default=1000, help="seed rows of the timed task"),
    finetune_batch_size=positive_int(default=32, help="fine-tuning batch size"),
    large_batch_size=Param(int, min=0, default=1024, help="the published configuration's batch, timed too (0: skip)"),
    large_meta_steps=positive_int(default=3, help="timed meta-steps at large_batch_size"),
    large_finetune_seed_rows=positive_int(default=2048, help="seed rows of the task timed at large_batch_size"),
    paddlerec_code_dir=Param(str, default="", help="PaddleRec's models/multitask/metaheac folder, timed as well "
                                                   "(empty: not)"),
)


def _settings(config):
    """The benchmark: settings, checked against BENCHMARK_SPEC (whoever loaded the config)."""
    values = {}
    for key, param in BENCHMARK_SPEC.items():
        try:
            values[key.split(".", 1)[1]] = param.check(key, config.get(key))
        except SpecError as error:
            raise ConfigError(f"{config.path}: {error}") from None
    values["max_idxs"] = values["max_idxs"] or config.get("hyper_parameters.max_idxs")
    return values


def _model(config, sparse=True):
    hp = lambda k: config.get(f"hyper_parameters.{k}")  # noqa: E731
    return MetaHeacLayer(schema(config), STATIC + DYNAMIC, AD, hp("mlp_dims"), hp("num_expert"),
                         hp("num_output"), hp("dropout"), sparse=sparse)


class _MetaRunner:
    """One timed meta-step variant with its own model and optimizer."""

    def __init__(self, config, kind, first_order):
        paddle.seed(config.get("runner.seed"))
        self.dm, self.config, self.kind, self.first_order = DygraphModel(), config, kind, first_order
        self.model = PaddleRecStyleNet(config) if kind == "paddlerec" else _model(config)
        self.optimizer = self.dm.create_optimizer(self.model, config)
        self.lr = config.get("hyper_parameters.local_lr")
        self.times = []

    def step(self, batch):
        start = time.perf_counter()
        support, query, _ = self.dm.create_feeds(batch, self.config)
        if self.kind == "paddlerec":
            loss = paddlerec_meta_loss(self.model, support, query, self.lr)
        elif self.kind == "dense":
            loss = dense_meta_loss(self.model, support, query, self.lr, self.first_order, self.dm.create_loss)
        else:
            loss = meta_loss(self.model, support, query, self.lr, self.first_order, self.dm.create_loss)[0]
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        self.times.append(time.perf_counter() - start)


def time_meta_steps(config, batches, variants, paddlerec_code_dir=""):
    """{name: median seconds per meta-step} for ``variants`` ({name: (kind, first_order)}) and,
    with ``paddlerec_code_dir``, PaddleRec's own code ("paddlerec_code"), run interleaved (step i
    of every variant, then step i + 1) so that machine load hits all alike; the first step of
    each pays one-off allocations and is not counted."""
    runners = {name: _MetaRunner(config, kind, fo) for name, (kind, fo) in variants.items()}
    if paddlerec_code_dir:
        runners["paddlerec_code"] = PaddleRecCodeRunner(config, paddlerec_code_dir)
    for batch in batches:
        for runner in runners.values():
            runner.step(batch)
    return {name: float(np.median(r.times[1:])) for name, r in runners.items()}


def _benchmark_task(config, seed_rows):
    """A hot test task of the sample with its seed rows resampled to ``seed_rows`` rows."""
    folder = config.get("runner.test_hot_data_dir") or config.get("runner.test_data_dir")
    task = TestTasks(LookalikeRows, folder, config, "runner.test_hot_data_dir").tasks[0]
    pick = np.random.default_rng(0).choice(len(task.stage1["label"]), seed_rows, replace=True)
    return Task(task.aid, {k: v[pick] for k, v in task.stage1.items()}, task.stage2)


def _time_finetune(config, s, batch_size, seed_rows):
    """Fine-tune + score one test task: PaddleRec's loop (and, with paddlerec_code_dir, PaddleRec's
    own code) vs TaskEvaluator, interleaved."""
    tune_cfg = config.copy({"hyper_parameters.max_idxs": s["max_idxs"], "hyper_parameters.batch_size": batch_size})
    task = _benchmark_task(tune_cfg, seed_rows)
    paddle.seed(config.get("runner.seed"))
    model = _model(tune_cfg, sparse=False)
    baseline = PaddleRecStyleNet(tune_cfg)
    evaluator = TaskEvaluator(model, DygraphModel(), tune_cfg)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "paddlerec.pdparams")
        paddle.save(baseline.state_dict(), path)
        sides = {"paddlerec": lambda: paddlerec_finetune(tune_cfg, baseline, path, task),
                 "ours": lambda: evaluator.finetune_and_predict(task)}
        if s["paddlerec_code_dir"]:
            code = PaddleRecCodeRunner(tune_cfg, s["paddlerec_code_dir"])
            code_path = os.path.join(folder, "paddlerec_code.pdparams")
            paddle.save(code.model.state_dict(), code_path)
            sides["paddlerec_code"] = lambda: paddlerec_code_finetune(code.dm, code.model, code_path, task, tune_cfg)
        times = {name: [] for name in sides}
        for i in range(s["finetune_tasks"] + 1):  # the first round is a warm-up
            for name, run in sides.items():
                start = time.perf_counter()
                run()
                if i:
                    times[name].append(time.perf_counter() - start)
    ours, theirs = float(np.median(times["ours"])), float(np.median(times["paddlerec"]))
    result = {"finetune_batch_size": batch_size, "finetune_seed_rows": seed_rows,
              "finetune_candidate_rows": len(task.stage2["label"]), "paddlerec_style_seconds_per_task": theirs,
              "finetune_seconds_per_task": ours, "finetune_speedup": theirs / ours}
    if "paddlerec_code" in times:
        code_seconds = float(np.median(times["paddlerec_code"]))
        result.update(paddlerec_code_finetune_seconds_per_task=code_seconds,
                      paddlerec_code_finetune_speedup=code_seconds / ours)
    return result


def _math_threads():
    return paddle.get_flags(["FLAGS_paddle_num_threads"]).get("FLAGS_paddle_num_threads")


def run_benchmark(config):
    """-> dict of timings (seconds) and speed-ups; see the module docstring."""
    s = _settings(config)
    paddle.set_device("cpu")
    first_order = config.get("hyper_parameters.first_order")
    result = {"settings": {**s, "first_order": first_order,
                           "lazy_mode": config.get("hyper_parameters.optimizer.lazy_mode"),
                           "math_threads": _math_threads(),
                           # MKL's kernels (tools/utils picks them on AMD CPUs): both sides use the same
                           "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE"),
                           "table_rows": int(sum(m + 1 for g in s["max_idxs"] for m in g))}}
    variants = {"ours_first_order": ("ours", True), "ours_second_order": ("ours", False),
                "dense_first_order": ("dense", True), "dense_second_order": ("dense", False),
                "paddlerec": ("paddlerec", True)}
    sizes = [("", s["batch_size"], s["meta_steps"])]
    if s["large_batch_size"]:
        sizes.append(("large_", s["large_batch_size"], s["large_meta_steps"]))
    for prefix, batch_size, steps in sizes:
        meta_cfg = config.copy({"hyper_parameters.max_idxs": s["max_idxs"], "hyper_parameters.batch_size": batch_size,
                                "hyper_parameters.task_count": s["task_count"]})
        sampler = TaskSampler(LookalikeRows(list_data_files(config.get("runner.train_data_dir"), "runner.train_data_dir"),
                                            meta_cfg), meta_cfg)
        seconds = time_meta_steps(meta_cfg, [sampler[i] for i in range(steps + 1)], variants, s["paddlerec_code_dir"])
        figures = {"batch_size": batch_size}
        if "paddlerec_code" in seconds:
            figures["paddlerec_code_meta_step_seconds"] = seconds["paddlerec_code"]
            for order in ("first_order", "second_order"):
                figures[f"paddlerec_code_speedup_{order}"] = seconds["paddlerec_code"] / seconds[f"ours_{order}"]
        for order in ("first_order", "second_order"):
            figures[f"meta_step_seconds_{order}"] = seconds[f"ours_{order}"]
            figures[f"dense_baseline_meta_step_seconds_{order}"] = seconds[f"dense_{order}"]
            figures[f"meta_step_speedup_{order}"] = seconds[f"dense_{order}"] / seconds[f"ours_{order}"]
            # PaddleRec's meta-step (its own layout, first order in effect: its fast weights use
            # .grad, which carries no graph) against ours at each order.
            figures[f"paddlerec_style_speedup_{order}"] = seconds["paddlerec"] / seconds[f"ours_{order}"]
        figures["paddlerec_style_meta_step_seconds"] = seconds["paddlerec"]
        # Headline figures: PaddleRec's meta-step against ours at the same math (first order).
        figures["meta_step_seconds"] = figures["meta_step_seconds_first_order"]
        figures["dense_baseline_meta_step_seconds"] = figures["dense_baseline_meta_step_seconds_first_order"]
        figures["meta_step_speedup"] = figures["meta_step_speedup_first_order"]
        if prefix:
            result["large_batch"] = figures
        else:
            result.update(figures)

    result.update(_time_finetune(config, s, s["finetune_batch_size"], s["finetune_seed_rows"]))
    if s["large_batch_size"]:
        result["large_batch"].update(_time_finetune(config, s, s["large_batch_size"], s["large_finetune_seed_rows"]))
    return result


def main(args):
    """Time MetaHeac's meta-step and per-task fine-tuning against PaddleRec-style baselines."""
    from tools.utils.runtime import setup

    result = run_benchmark(setup(args, distributed=False, extra_spec=BENCHMARK_SPEC).config)
    print(json.dumps(result, indent=2), flush=True)
    return result


if __name__ == "__main__":
    from tools.utils.runtime import run_main

    run_main(main)

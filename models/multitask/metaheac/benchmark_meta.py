"""Speed of MetaHeac's two expensive loops against PaddleRec-style re-implementations, measured in
the same process at the config's ``benchmark:`` settings (PaddleRec's sample config: full-size
vocabularies, batch 4, 5 tasks, 64-dim embeddings):

- meta-step: row-subset fast weights (ours) vs dense fast weights over the whole table
  (W' = W - lr * dW for every row, as PaddleRec), both followed by the Adam step;
- per-task fine-tuning: in-memory restore + Adam over the task's rows and the dense weights (ours)
  vs re-reading the checkpoint + dense Adam over all parameters (as PaddleRec's infer_meta.py).

    python models/multitask/metaheac/benchmark_meta.py -m models/multitask/metaheac/config.yaml [-o benchmark.meta_steps=5]

tools/benchmark.py calls ``run_benchmark(config)``.
"""
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import tools.utils  # noqa: E402,F401  (must precede paddle: see tools/utils/__init__.py)
import paddle  # noqa: E402

from dygraph_model import DygraphModel, meta_loss, task_batch  # noqa: E402
from infer_meta import TaskEvaluator, _tensors  # noqa: E402
from lookalike_data import AD, DYNAMIC, STATIC, schema  # noqa: E402
from models.common.data import list_data_files  # noqa: E402
from models.common.meta import inner_sgd_step  # noqa: E402
from net import MetaHeacLayer  # noqa: E402
from reader_infer import RecDataset as InferDataset  # noqa: E402
from reader_infer import Task  # noqa: E402
from reader_train import RecDataset as TrainDataset  # noqa: E402
from tools.utils.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

DEFAULTS = {"max_idxs": None, "batch_size": 4, "task_count": 5, "meta_steps": 3, "finetune_tasks": 2,
            "finetune_seed_rows": 1000, "finetune_batch_size": 32}


def _settings(config):
    values = {k: config.get(f"benchmark.{k}", v) for k, v in DEFAULTS.items()}
    values["max_idxs"] = values["max_idxs"] or config.get("hyper_parameters.max_idxs")
    return values


def _model(config, sparse=True):
    hp = lambda k, d=None: config.get(f"hyper_parameters.{k}", d)  # noqa: E731
    return MetaHeacLayer(schema(config), STATIC + DYNAMIC, AD, hp("mlp_dims"), hp("num_expert"),
                         hp("num_output"), hp("dropout", 0.0), sparse=sparse)


def dense_meta_loss(model, support, query, local_lr, first_order, loss_fn):
    """PaddleRec's meta-step: fast weights for *every* parameter, whole table included."""
    losses = []
    for t in range(support["label"].shape[0]):
        s_batch, q_batch = task_batch(support, t), task_batch(query, t)
        params = dict(model.named_parameters())
        support_loss = loss_fn(model(s_batch, params), s_batch["label"])
        fast = inner_sgd_step(support_loss, params, local_lr, first_order)  # dense [V, d] update of the table
        losses.append(loss_fn(model(q_batch, fast), q_batch["label"]))
    return paddle.stack(losses).mean()


def _time_meta_steps(config, dense, first_order, batches):
    paddle.seed(config.get("runner.seed"))
    dm = DygraphModel()
    model = _model(config)
    optimizer = dm.create_optimizer(model, config)
    lr = config.get("hyper_parameters.local_lr")
    times = []
    for batch in batches:
        start = time.perf_counter()
        support, query, _ = dm.create_feeds(batch, config)
        if dense:
            loss = dense_meta_loss(model, support, query, lr, first_order, dm.create_loss)
        else:
            loss = meta_loss(model, support, query, lr, first_order, dm.create_loss)[0]
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))  # the first step pays one-off allocations


def _benchmark_task(config, seed_rows):
    """A hot test task of the sample with its seed rows resampled to ``seed_rows`` rows."""
    folder = config.get("runner.test_hot_data_dir") or config.get("runner.test_data_dir")
    task = InferDataset(list_data_files(folder, "runner.test_hot_data_dir"), config).tasks[0]
    pick = np.random.default_rng(0).choice(len(task.stage1["label"]), seed_rows, replace=True)
    return Task(task.aid, {k: v[pick] for k, v in task.stage1.items()}, task.stage2)


def _paddlerec_finetune(config, model, folder, task):
    """PaddleRec's per-task loop: reload the checkpoint, dense Adam over every parameter."""
    dm = DygraphModel()
    load_checkpoint(folder, 0, model)
    optimizer = paddle.optimizer.Adam(learning_rate=config.get("hyper_parameters.optimizer.local_test_learning_rate"),
                                      parameters=model.parameters())
    model.train()
    size = config.get("hyper_parameters.batch_size")
    for _ in range(config.get("runner.infer_train_epoch")):
        for i in range(0, len(task.stage1["label"]), size):
            batch = _tensors(task.stage1, slice(i, i + size))
            loss = dm.create_loss(model(batch), batch["label"])
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    model.eval()
    with paddle.no_grad():
        return model(_tensors(task.stage2)).numpy()


def run_benchmark(config):
    """-> dict of timings (seconds) and speed-ups; see the module docstring."""
    s = _settings(config)
    paddle.set_device("cpu")
    meta_cfg = config.copy({"hyper_parameters.max_idxs": s["max_idxs"], "hyper_parameters.batch_size": s["batch_size"],
                            "hyper_parameters.task_count": s["task_count"]})
    sampler = TrainDataset(list_data_files(config.get("runner.train_data_dir"), "runner.train_data_dir"), meta_cfg)
    batches = [sampler[i] for i in range(s["meta_steps"] + 1)]
    first_order = bool(config.get("hyper_parameters.first_order", False))
    result = {"settings": {**s, "first_order": first_order,
                           "lazy_mode": bool(config.get("hyper_parameters.optimizer.lazy_mode", False)),
                           "table_rows": int(sum(m + 1 for g in s["max_idxs"] for m in g))}}
    for order, flag in (("first_order", True), ("second_order", False)):
        result[f"meta_step_seconds_{order}"] = _time_meta_steps(meta_cfg, False, flag, batches)
        result[f"dense_baseline_meta_step_seconds_{order}"] = _time_meta_steps(meta_cfg, True, flag, batches)
        result[f"meta_step_speedup_{order}"] = (result[f"dense_baseline_meta_step_seconds_{order}"]
                                                / result[f"meta_step_seconds_{order}"])
    # Headline figures: PaddleRec's meta-step (dense, first order in effect: its fast weights use
    # .grad, which carries no graph) against ours at the same math.
    result["meta_step_seconds"] = result["meta_step_seconds_first_order"]
    result["dense_baseline_meta_step_seconds"] = result["dense_baseline_meta_step_seconds_first_order"]
    result["meta_step_speedup"] = result["meta_step_speedup_first_order"]

    tune_cfg = config.copy({"hyper_parameters.max_idxs": s["max_idxs"],
                            "hyper_parameters.batch_size": s["finetune_batch_size"]})
    task = _benchmark_task(tune_cfg, s["finetune_seed_rows"])
    paddle.seed(config.get("runner.seed"))
    model = _model(tune_cfg, sparse=False)
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(folder, 0, model, paddle.optimizer.Adam(parameters=model.parameters()))
        times = []
        for _ in range(s["finetune_tasks"]):
            start = time.perf_counter()
            _paddlerec_finetune(tune_cfg, model, folder, task)
            times.append(time.perf_counter() - start)
        result["paddlerec_style_seconds_per_task"] = float(np.median(times))
        load_checkpoint(folder, 0, model)
        evaluator = TaskEvaluator(model, DygraphModel(), tune_cfg)
        evaluator.finetune_and_predict(task)  # warm-up
        times = []
        for _ in range(s["finetune_tasks"]):
            start = time.perf_counter()
            evaluator.finetune_and_predict(task)
            times.append(time.perf_counter() - start)
        result["finetune_seconds_per_task"] = float(np.median(times))
    result["finetune_speedup"] = result["paddlerec_style_seconds_per_task"] / result["finetune_seconds_per_task"]
    return result


def main(args):
    """Time MetaHeac's meta-step and per-task fine-tuning against PaddleRec-style baselines."""
    from tools.utils.runtime import setup

    result = run_benchmark(setup(args, distributed=False).config)
    print(json.dumps(result, indent=2), flush=True)
    return result


if __name__ == "__main__":
    from tools.utils.runtime import run_main

    run_main(main)

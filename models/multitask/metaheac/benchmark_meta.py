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

    python models/multitask/metaheac/benchmark_meta.py -m models/multitask/metaheac/config.yaml [-o benchmark.meta_steps=5]

tools/benchmark.py calls ``run_benchmark(config)``.
"""
import importlib.util
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
import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
import paddle  # noqa: E402

from .dygraph_model import DygraphModel, meta_loss, task_batch  # noqa: E402
from .infer_meta import TaskEvaluator, _tensors  # noqa: E402
from .lookalike_data import AD, DYNAMIC, STATIC, schema  # noqa: E402
from models.common.data import list_data_files  # noqa: E402
from models.common.meta import inner_sgd_step  # noqa: E402
from .net import MetaHeacLayer  # noqa: E402
from .reader_infer import RecDataset as InferDataset  # noqa: E402
from .reader_infer import Task  # noqa: E402
from .reader_train import RecDataset as TrainDataset  # noqa: E402

DEFAULTS = {"max_idxs": None, "batch_size": 4, "task_count": 5, "meta_steps": 3, "finetune_tasks": 2,
            "finetune_seed_rows": 1000, "finetune_batch_size": 32,
            # the published configuration's size (config_bigdata.yaml); 0 skips it
            "large_batch_size": 1024, "large_meta_steps": 3, "large_finetune_seed_rows": 2048,
            # PaddleRec's own MetaHeac folder (models/multitask/metaheac of a PaddleRec checkout); "" skips it
            "paddlerec_code_dir": ""}


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


class PaddleRecStyleNet(paddle.nn.Layer):
    """PaddleRec's layout of the same network, for the baseline: one nn.Embedding per field (20
    lookups), the multi-hot fields mean-pooled with a mask, num_expert separate expert MLPs
    (nn.Linear + ReLU), paddle's softmax and BCE. Same math as MetaHeacLayer (both expert layers
    applied); run as PaddleRec's meta-step: first order (fast weights from constant gradients),
    dense fast weights for every table."""

    def __init__(self, config):
        super().__init__()
        hp = lambda k, d=None: config.get(f"hyper_parameters.{k}", d)  # noqa: E731
        dim, (static, dynamic, ad) = hp("embed_dim"), hp("max_idxs")
        self.names = STATIC + DYNAMIC + AD
        self.tables = paddle.nn.LayerList([paddle.nn.Embedding(m + 1, dim) for m in static + dynamic + ad])
        user_dim, task_dim, hidden = 14 * dim, 7 * dim, hp("mlp_dims")[-1]

        def mlp(dims, last_relu=True):
            layers = []
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
                layers.append(paddle.nn.Linear(a, b))
                if last_relu or i < len(dims) - 2:
                    layers.append(paddle.nn.ReLU())
            return paddle.nn.Sequential(*layers)

        self.experts = paddle.nn.LayerList([mlp([user_dim] + hp("mlp_dims")) for _ in range(hp("num_expert"))])
        self.expert_gate = mlp([task_dim, hidden, hp("num_expert")], last_relu=False)
        self.critics = paddle.nn.Linear(hidden, hp("num_output"))
        self.critic_gate = mlp([task_dim, hidden, hp("num_output")], last_relu=False)

    def forward(self, batch, fast=None):
        """``fast``: {parameter name: tensor} replacing the parameters (paddle has no functional
        call: the values are swapped in for the pass and swapped back)."""
        saved = {}
        if fast is not None:
            for name, p in self.named_parameters():
                saved[name] = p
            self._swap(fast)
        try:
            fields = []
            for name, table in zip(self.names, self.tables):
                ids = batch[name]
                if name in DYNAMIC:
                    emb = table(ids)
                    length = batch[name + "_length"].reshape([-1, 1]).astype("float32")
                    mask = (paddle.arange(ids.shape[1], dtype="float32").reshape([1, -1]) < length).astype("float32")
                    fields.append(paddle.sum(emb * mask.unsqueeze(-1), axis=1) / paddle.clip(length, min=1.0))
                else:
                    fields.append(table(ids.reshape([-1])))
            user = paddle.stack(fields[:14], axis=1)
            task = paddle.concat([user.mean(axis=1)] + fields[14:], axis=1)
            user = user.reshape([user.shape[0], -1])
            gate = paddle.nn.functional.softmax(self.expert_gate(task), axis=1)
            outputs = paddle.stack([expert(user) for expert in self.experts], axis=1)
            fea = paddle.sum(gate.unsqueeze(-1) * outputs, axis=1)
            critic_gate = paddle.nn.functional.softmax(self.critic_gate(task), axis=1)
            return paddle.sum(critic_gate * paddle.nn.functional.sigmoid(self.critics(fea)), axis=1)
        finally:
            if fast is not None:
                self._swap(saved)

    def _swap(self, values):
        for name, value in values.items():
            *path, attr = name.split(".")
            layer = self
            for part in path:
                layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
            layer._parameters[attr] = value


def paddlerec_meta_loss(model, support, query, local_lr):
    """PaddleRec's meta-step on PaddleRecStyleNet: constant inner gradients, dense fast weights."""
    losses = []
    for t in range(support["label"].shape[0]):
        s_batch, q_batch = task_batch(support, t), task_batch(query, t)
        names, params = zip(*model.named_parameters())
        loss = paddle.nn.functional.binary_cross_entropy(model(s_batch), s_batch["label"].astype("float32"))
        grads = paddle.grad(loss, list(params))
        fast = {n: p - local_lr * g.detach() for n, p, g in zip(names, params, grads)}
        losses.append(paddle.nn.functional.binary_cross_entropy(model(q_batch, fast), q_batch["label"].astype("float32")))
    return paddle.stack(losses).mean()


def load_paddlerec_metaheac(folder):
    """PaddleRec's own DygraphModel class from ``folder`` (its dygraph_model.py, which imports its
    net.py as ``net``). Our modules of the same names (net, dygraph_model, ...) stay in place:
    sys.modules and sys.path are restored after the import."""
    missing = [n for n in ("net.py", "dygraph_model.py") if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise FileNotFoundError(f"benchmark.paddlerec_code_dir: {folder!r} has no {', '.join(missing)} (expected "
                                "the models/multitask/metaheac folder of a PaddlePaddle/PaddleRec checkout)")
    # PaddleRec's modules import their siblings by plain name (``import net``): its folder goes first
    # on sys.path while they load, and sys.modules / sys.path are restored afterwards.
    names = [n[:-3] for n in os.listdir(folder) if n.endswith(".py")]
    saved, path = {n: sys.modules.pop(n, None) for n in names}, list(sys.path)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("dygraph_model", os.path.join(folder, "dygraph_model.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["dygraph_model"] = module
        spec.loader.exec_module(module)
        return module.DygraphModel
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        sys.path[:] = path


def paddlerec_inputs(columns):
    """Rows {column: array [N, ...]} in PaddleRec's input layout: [static ids [N, 7], the multi-hot
    ids concatenated [N, 50], their lengths [N, 7], ad ids [N, 6]], labels [N] (int64)."""
    x = [paddle.to_tensor(np.stack([columns[n] for n in STATIC], axis=1)),
         paddle.to_tensor(np.concatenate([columns[n] for n in DYNAMIC], axis=1)),
         paddle.to_tensor(np.stack([columns[n + "_length"] for n in DYNAMIC], axis=1)),
         paddle.to_tensor(np.stack([columns[n] for n in AD], axis=1))]
    return x, paddle.to_tensor(np.asarray(columns["label"]).astype(np.int64))


def paddlerec_feeds(batch):
    """A meta-batch ({"support", "query"}: {column: [T, B, ...]}) as PaddleRec's train_forward
    takes it: [x_spt, y_spt, x_qry, y_qry], one paddlerec_inputs entry per task."""
    feeds = []
    for side in (batch["support"], batch["query"]):
        inputs = [paddlerec_inputs({k: v[t] for k, v in side.items()}) for t in range(len(side["label"]))]
        feeds += [[x for x, _ in inputs], [y for _, y in inputs]]
    return feeds


class PaddleRecCodeRunner:
    """PaddleRec's own meta-step, stepped as its tools/trainer.py steps it: its train_forward
    (per task: support backward, dense fast weights for every parameter, query loss, AUC update),
    then clear_grad, backward and the Adam step. Its network applies only the first layer of each
    expert MLP; the rest is the same model."""

    def __init__(self, config, folder):
        paddle.seed(config.get("runner.seed"))
        self.config, self.dm = config, load_paddlerec_metaheac(folder)()
        self.model = self.dm.create_model(config)
        self.optimizer = self.dm.create_optimizer(self.model, config)
        self.metrics = self.dm.create_metrics()[0]
        self.times = []

    def step(self, batch):
        start = time.perf_counter()
        loss, self.metrics, _ = self.dm.train_forward(self.model, self.metrics, paddlerec_feeds(batch), self.config)
        self.optimizer.clear_grad()
        loss.backward()
        self.optimizer.step()
        self.times.append(time.perf_counter() - start)


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
    task = InferDataset(list_data_files(folder, "runner.test_hot_data_dir"), config).tasks[0]
    pick = np.random.default_rng(0).choice(len(task.stage1["label"]), seed_rows, replace=True)
    return Task(task.aid, {k: v[pick] for k, v in task.stage1.items()}, task.stage2)


def _paddlerec_finetune(config, model, path, task):
    """PaddleRec's per-task loop on its own layout: reload the saved weights, dense Adam over every
    parameter, paddle's BCE."""
    model.set_state_dict(paddle.load(path))
    optimizer = paddle.optimizer.Adam(learning_rate=config.get("hyper_parameters.optimizer.local_test_learning_rate"),
                                      parameters=model.parameters())
    model.train()
    size = config.get("hyper_parameters.batch_size")
    for _ in range(config.get("runner.infer_train_epoch")):
        for i in range(0, len(task.stage1["label"]), size):
            batch = _tensors(task.stage1, slice(i, i + size))
            loss = paddle.nn.functional.binary_cross_entropy(model(batch), batch["label"].astype("float32"))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    model.eval()
    with paddle.no_grad():
        return model(_tensors(task.stage2)).numpy()


def paddlerec_code_finetune(dm, model, path, task, config):
    """PaddleRec's infer.py for one task with its own code: reload the meta-trained weights, a fresh
    Adam over every parameter, infer_train_epoch passes of infer_train_forward over the seed rows,
    then infer_forward over the candidates (which updates its AUC metrics)."""
    model.set_state_dict(paddle.load(path))
    optimizer = dm.create_optimizer(model, config, "infer")
    size = config.get("hyper_parameters.batch_size")

    def batches(rows):
        x, y = paddlerec_inputs(rows)
        return [([part[i:i + size] for part in x], y[i:i + size]) for i in range(0, len(rows["label"]), size)]

    model.train()
    for _ in range(config.get("runner.infer_train_epoch")):
        for batch in batches(task.stage1):
            loss = dm.infer_train_forward(model, list(batch), config)
            model.clear_gradients()
            loss.backward()
            optimizer.step()
    model.eval()
    metrics, local = dm.create_metrics()[0], dm.create_metrics()[0]
    with paddle.no_grad():
        for batch in batches(task.stage2):
            dm.infer_forward(model, metrics, local, list(batch), config)


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
        sides = {"paddlerec": lambda: _paddlerec_finetune(tune_cfg, baseline, path, task),
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
    first_order = bool(config.get("hyper_parameters.first_order", False))
    result = {"settings": {**s, "first_order": first_order,
                           "lazy_mode": bool(config.get("hyper_parameters.optimizer.lazy_mode", False)),
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
        sampler = TrainDataset(list_data_files(config.get("runner.train_data_dir"), "runner.train_data_dir"), meta_cfg)
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

    result = run_benchmark(setup(args, distributed=False).config)
    print(json.dumps(result, indent=2), flush=True)
    return result


if __name__ == "__main__":
    from tools.utils.runtime import run_main

    run_main(main)

"""The PaddleRec side of benchmarks/models/metaheac.py: PaddleRec's MetaHeac loops re-implemented on
its layout (20 per-field tables, separate expert MLPs, dense fast weights for every parameter), and
PaddleRec's own code (its net.py / dygraph_model.py, unmodified) loaded from a checkout and stepped
as its tools/trainer.py and infer.py step it."""
import importlib.util
import os
import sys
import time

import numpy as np
import paddle

from models.common.meta import inner_sgd_step
from models.common.data.loader import to_tensors
from models.common.meta_model import task_batch
from models.common.datasets.lookalike import AD, DYNAMIC, STATIC


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
        hp = lambda k: config.get(f"hyper_parameters.{k}")  # noqa: E731
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


def paddlerec_finetune(config, model, path, task):
    """PaddleRec's per-task loop on its own layout: reload the saved weights, dense Adam over every
    parameter, paddle's BCE."""
    model.set_state_dict(paddle.load(path))
    optimizer = paddle.optimizer.Adam(learning_rate=config.get("hyper_parameters.optimizer.local_test_learning_rate"),
                                      parameters=model.parameters())
    model.train()
    size = config.get("hyper_parameters.batch_size")
    for _ in range(config.get("runner.infer_train_epoch")):
        for i in range(0, len(task.stage1["label"]), size):
            batch = to_tensors(task.stage1, slice(i, i + size))
            loss = paddle.nn.functional.binary_cross_entropy(model(batch), batch["label"].astype("float32"))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    model.eval()
    with paddle.no_grad():
        return model(to_tensors(task.stage2)).numpy()


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

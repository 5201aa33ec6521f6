"""Multi-task ranking: tasks declared in the config, one loss and one set of metrics per task,
and the network pieces the multi-task models share (flat feature input, mixture of experts with
softmax gates, per-task towers).

A config declares its tasks under ``hyper_parameters.tasks``::

    tasks:
      - {name: income, label: income, type: binary, weight: 1.0}
      - {name: age, label: age, type: regression, weight: 0.5}

``binary`` -> sigmoid output, logloss, metrics ``auc_<name>`` (and ``logloss_<name>`` when
evaluating); ``regression`` -> raw output, mean squared error, ``rmse_<name>``. The network
returns ``{task name: output [B, 1]}``; the loss is the weighted sum of the task losses.
A metric may be restricted to the rows where another label is 1 (ESMM's CVR AUC on clicked
impressions): ``MetricSpec(..., where=label)``.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.base_model import BaseDygraphModel
from models.common.export import Served
from models.common.features import Label
from models.common.layers import MLP, ExpertBank, add_bias, split_views
from models.common.metrics import AUC, LogLoss, RunningAUC, to_numpy
from models.common.spec import Param, SpecError

TASKS = "hyper_parameters.tasks"
TASK_TYPES = ("binary", "regression")


class Task:
    def __init__(self, name, label, type, weight):
        self.name, self.label, self.type, self.weight = name, label, type, weight

    def __repr__(self):
        return f"Task({self.name!r}, label={self.label!r}, type={self.type!r}, weight={self.weight})"


def parse_tasks(value, key=TASKS):
    """The tasks of a config value (a list of mappings); SpecError naming ``key[i].field``."""
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"'{key}' must be a non-empty list of tasks "
                        f"({{name: ..., label: ..., type: binary|regression, weight: ...}}), got {value!r}")
    tasks, names = [], set()
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"'{where}' must be a mapping with name, label, type and weight, got {item!r}")
        unknown = sorted(set(item) - {"name", "label", "type", "weight"})
        if unknown:
            raise SpecError(f"'{where}' has unknown key(s) {unknown} (expected name, label, type, weight)")
        name = item.get("name", item.get("label"))
        label = item.get("label")
        for field, text in (("label", label), ("name", name)):
            if not isinstance(text, str) or not text:
                raise SpecError(f"'{where}.{field}' must be a non-empty string, got {text!r}")
        kind = item.get("type")
        if kind not in TASK_TYPES:
            raise SpecError(f"'{where}.type' must be one of {', '.join(TASK_TYPES)}, got {kind!r}")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0 \
                or not math.isfinite(weight):
            raise SpecError(f"'{where}.weight' must be a number >= 0, got {weight!r}")
        if name in names:
            raise SpecError(f"'{where}.name': task {name!r} is declared twice")
        names.add(name)
        tasks.append(Task(name, label, kind, float(weight)))
    return tasks


def task_labels(tasks):
    """The Label declarations the tasks read (binary: values 0/1; regression: any finite number)."""
    labels = {}
    for t in tasks:
        values = (0, 1) if t.type == "binary" else None
        if t.label in labels and labels[t.label].values != (None if values is None else [0.0, 1.0]):
            raise SpecError(f"'{TASKS}': label {t.label!r} is used by a binary and a regression task")
        labels[t.label] = Label(t.label, values=values)
    return list(labels.values())


# ---- metrics ------------------------------------------------------------------------------------
class RMSE:
    """Root mean squared error over everything seen since the last reset."""

    def __init__(self, name="rmse"):
        self.name = name
        self.reset()

    def reset(self):
        self._sum, self._count = 0.0, 0

    def update(self, pred, label):
        diff = to_numpy(pred).astype(np.float64) - to_numpy(label).astype(np.float64)
        self._sum += float((diff * diff).sum())
        self._count += diff.size

    def accumulate(self):
        return math.sqrt(self._sum / self._count) if self._count else float("nan")


class MetricSpec:
    """Metric ``name`` of network output ``output`` against label ``label``, over the rows where
    label ``where`` is 1 (all rows when None). ``kind``: auc, logloss or rmse."""

    def __init__(self, name, kind, output, label, where=None):
        self.name, self.kind, self.output, self.label, self.where = name, kind, output, label, where


class TaskMetric:
    """An accumulating metric fed with the whole batch: picks its output, label and rows."""

    def __init__(self, spec, mode):
        self.spec, self.name = spec, spec.name
        if spec.kind == "auc":
            self.inner = RunningAUC(spec.name) if mode == "train" else AUC(spec.name)
        elif spec.kind == "logloss":
            self.inner = LogLoss(spec.name)
        elif spec.kind == "rmse":
            self.inner = RMSE(spec.name)
        else:
            raise ValueError(f"unknown metric kind {spec.kind!r}")

    def reset(self):
        self.inner.reset()

    def update(self, outputs, batch):
        pred, label = to_numpy(outputs[self.spec.output]), to_numpy(batch[self.spec.label])
        if self.spec.where is not None:
            keep = to_numpy(batch[self.spec.where]) > 0.5
            pred, label = pred[keep], label[keep]
        if label.size:
            self.inner.update(pred, label)

    def accumulate(self):
        return self.inner.accumulate()


# ---- the model wrapper ------------------------------------------------------------------------------
class MultiTaskModel(BaseDygraphModel):
    """Base ``DygraphModel`` of multi-task models: the network maps a batch to ``{task: output}``.

    ``tasks_of(config)`` gives the tasks (by default the config's ``hyper_parameters.tasks``);
    ``metric_specs(tasks, mode)`` the metrics (per task by default; ESMM adds its CVR AUC)."""

    config_spec = {TASKS: Param(list, non_empty=True, help="the tasks: [{name, label, type: binary|regression, "
                                                          "weight}] (loss = weighted sum)")}

    def __init__(self):
        self.tasks = None

    def tasks_of(self, config):
        return parse_tasks(config.get(TASKS))

    def check_config(self, config):
        super().check_config(config)
        self.tasks = self.tasks_of(config)
        if not any(t.weight > 0 for t in self.tasks):
            raise SpecError(f"every task's loss weight is 0 ({', '.join(f'{t.name}: 0' for t in self.tasks)}), so "
                            f"nothing would be trained: give one task a weight above 0")
        task_labels(self.tasks)
        check_task_labels(self.tasks, self.schema(config))

    @property
    def label_names(self):
        return tuple(dict.fromkeys(t.label for t in self.tasks or ()))

    def metric_specs(self, tasks, mode):
        specs = []
        for t in tasks:
            if t.type == "binary":
                specs.append(MetricSpec(f"auc_{t.name}", "auc", t.name, t.label))
                if mode != "train":
                    specs.append(MetricSpec(f"logloss_{t.name}", "logloss", t.name, t.label))
            else:
                specs.append(MetricSpec(f"rmse_{t.name}", "rmse", t.name, t.label))
        return specs

    def create_metrics(self, mode="train"):
        if self.tasks is None:
            raise RuntimeError("check_config(config) must run before create_metrics (it reads the tasks)")
        metrics = [TaskMetric(s, mode) for s in self.metric_specs(self.tasks, mode)]
        return metrics, [m.name for m in metrics]

    def create_feeds(self, batch_data, config):
        return {t.label: batch_data[t.label] for t in self.tasks}, batch_data

    def create_loss(self, outputs, labels):
        total = 0.0
        for t in self.tasks:
            pred = outputs[t.name]
            label = labels[t.label].astype(pred.dtype).reshape(pred.shape)
            if t.type == "binary":
                loss = F.binary_cross_entropy(pred, label)
            else:
                loss = F.mse_loss(pred, label)
            total = total + t.weight * loss
        return total

    def train_forward(self, dy_model, metrics_list, batch_data, config):
        labels, inputs = self.create_feeds(batch_data, config)
        outputs = dy_model(inputs)
        loss = self.create_loss(outputs, labels)
        detached = {k: v.detach() for k, v in outputs.items()}
        for metric in metrics_list:
            metric.update(detached, batch_data)
        return loss, metrics_list, None

    def serving_graphs(self, model, config):
        return {"rank": Served(model)}  # a score per task, pred_<task>

    def infer_forward(self, dy_model, metrics_list, batch_data, config):
        outputs = dy_model(batch_data)
        for metric in metrics_list:
            metric.update(outputs, batch_data)
        columns = {label: batch_data[label] for label in self.label_names}
        for name, value in outputs.items():
            columns[f"pred_{name}"] = value
        return metrics_list, columns


# ---- network pieces ---------------------------------------------------------------------------------
class MixtureOfExperts(nn.Layer):
    """MMoE's shared part: ``num_expert`` expert MLPs and one softmax gate per task.
    x [B, in] -> list of ``num_gate`` tensors [B, expert output], gate k's weighted sum of experts."""

    def __init__(self, num_expert, num_gate, input_dim, expert_dims, init="torch"):
        super().__init__()
        self.experts = ExpertBank(num_expert, input_dim, expert_dims, activation="relu", init=init)
        self.gates = nn.LayerList([MLP(input_dim, [num_expert], last_activation=False, init=init)
                                   for _ in range(num_gate)])
        self.output_dim = self.experts.output_dim

    def gate_weights(self, x):
        return [F.softmax(gate(x), axis=-1) for gate in self.gates]  # each [B, E]

    def forward(self, x):
        # The gates read the input of the experts' first layer: one matmul computes both (census:
        # [1024, 440] @ [440, 128 + 2 x 8]), and one batched matmul mixes the experts for every gate.
        num_expert, num_gate = self.experts.num_expert, len(self.gates)
        first = self.experts.first_weight()
        product = paddle.matmul(x, paddle.concat([first] + [g.linears[0].weight for g in self.gates], axis=1))
        projected, logits = split_views(product, [first.shape[1], num_gate * num_expert], axis=1)
        experts = self.experts(projected, projected=True)  # [B, E, out]
        logits = add_bias(logits, paddle.concat([g.linears[0].bias for g in self.gates]))
        gates = F.softmax(logits.reshape([-1, num_gate, num_expert]), axis=-1)  # [B, gates, E]
        mixed = paddle.transpose(paddle.matmul(gates, experts), [1, 0, 2])  # [gates, B, out]
        return [mixed[k] for k in range(num_gate)]


class Towers(nn.Layer):
    """One MLP tower per task ending in a single output: sigmoid for a binary task, none for a
    regression task. Inputs: one tensor per task (MMoE) or one shared tensor (Share-Bottom)."""

    def __init__(self, tasks, input_dim, dims, init="torch"):
        super().__init__()
        self.tasks = list(tasks)
        self.towers = nn.LayerList([MLP(input_dim, list(dims) + [1], last_activation=False, init=init)
                                    for _ in self.tasks])

    def forward(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs] * len(self.tasks)
        out = {}
        for task, tower, x in zip(self.tasks, self.towers, inputs):
            y = tower(x)
            out[task.name] = F.sigmoid(y) if task.type == "binary" else y
        return out


def check_task_labels(tasks, schema):
    """Every task's label is a label of the data; SpecError naming the task otherwise."""
    declared = [f.name for f in schema.labels]
    for i, t in enumerate(tasks):
        if t.label not in declared:
            raise SpecError(f"'{TASKS}[{i}].label': {t.label!r} is not a label of this data set "
                            f"(labels: {', '.join(declared)})")
        if t.type == "binary" and schema[t.label].values not in ([0.0, 1.0],):
            raise SpecError(f"'{TASKS}[{i}].type': binary, but label {t.label!r} is not 0/1")

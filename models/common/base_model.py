"""Base class for a model folder's ``DygraphModel``, with PaddleRec's method names.

A batch is a dict ``{column name: tensor}`` (see models.common.data); the network takes the whole
dict and reads its features by name. A binary-classification model only writes
``create_model``; the defaults give it BCE loss on the label ``label_names[0]``, the optimizer
of ``hyper_parameters.optimizer`` (``class``: Adam, AdamW, SGD, Adagrad, Momentum, RMSProp), a
running AUC in training logs and exact AUC + logloss for evaluation.

A model also declares what it reads and supports, so that the runners refuse a bad config before
any work: ``config_spec`` (key -> models.common.spec.Param: type, range, default, help),
``supports_data_parallel`` and ``data_parallel_requires``.
"""
import inspect
import os

import paddle
import paddle.nn.functional as F

from models.common.evaluation import RankingEvaluation
from models.common.export import Served
from models.common.loading import load_reader, reader_schema
from models.common.metrics import AUC, LogLoss, RunningAUC
from models.common.spec import Param, SpecError

HP = "hyper_parameters"
OPTIMIZER = f"{HP}.optimizer"
# hyper_parameters.optimizer.class (case-insensitive) -> paddle.optimizer class name
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad", "momentum": "Momentum",
              "rmsprop": "RMSProp"}
LAZY_OPTIMIZERS = ("Adam", "AdamW")  # the ones with lazy_mode (update only the rows a batch used)


OPTIMIZER_SPEC = {
    f"{OPTIMIZER}.class": Param(str, choices=OPTIMIZERS.values(), default="Adam", help="the optimizer (any case)"),
    f"{OPTIMIZER}.weight_decay": Param(float, min=0, required=False, help="L2 weight decay (AdamW: decoupled decay)"),
    f"{OPTIMIZER}.lazy_mode": Param(bool, default=False,
                                    help="Adam / AdamW update only the embedding rows a batch used"),
}
LEARNING_RATE = Param(float, above=0, default=0.001, help="the optimizer's learning rate")
SPARSE_GRADIENTS = "hyper_parameters.sparse_gradients"


def check_optimizer_config(config):
    """Combinations of optimizer keys that cannot work, as SpecError naming the key."""
    name = OPTIMIZERS[str(config.get(f"{OPTIMIZER}.class")).lower()]
    if config.get(f"{OPTIMIZER}.lazy_mode") and name not in LAZY_OPTIMIZERS:
        raise SpecError(f"'{OPTIMIZER}.lazy_mode' is true but {name} has no lazy mode "
                        f"(only {' and '.join(LAZY_OPTIMIZERS)}); set it to false")
    # paddle 3.3's CPU kernels, measured: on row-sparse gradients Adam without lazy mode gives other
    # parameters at every run (same data, same seed), AdamW fails reading a garbage dimension.
    if config.get(SPARSE_GRADIENTS) and (name == "AdamW" or (name == "Adam" and not config.get(f"{OPTIMIZER}.lazy_mode"))):
        raise SpecError(f"'{SPARSE_GRADIENTS}' is true with {name}" + ("" if name == "AdamW" else " without lazy_mode")
                        + f": paddle's {name} is not reliable on row-sparse gradients (runs differ); set "
                        + ("" if name == "AdamW" else f"'{OPTIMIZER}.lazy_mode' to true or ")
                        + f"'{SPARSE_GRADIENTS}' to false (dense gradients: the same math as plain Adam, as fast)")


def build_optimizer(parameters, config, learning_rate_key=f"{OPTIMIZER}.learning_rate"):
    """The optimizer ``hyper_parameters.optimizer`` describes: ``class``, the learning rate at
    ``learning_rate_key``, ``weight_decay`` (L2; AdamW's decoupled decay) and ``lazy_mode``
    (Adam/AdamW only)."""
    check_optimizer_config(config)
    name = OPTIMIZERS[str(config.get(f"{OPTIMIZER}.class")).lower()]
    learning_rate = config.get(learning_rate_key)
    if learning_rate is None:
        raise SpecError(f"required key '{learning_rate_key}' is missing")
    kwargs = {"learning_rate": float(learning_rate), "parameters": parameters}
    weight_decay = config.get(f"{OPTIMIZER}.weight_decay")
    if weight_decay is not None:
        kwargs["weight_decay"] = float(weight_decay)
    if name in LAZY_OPTIMIZERS:
        kwargs["lazy_mode"] = bool(config.get(f"{OPTIMIZER}.lazy_mode"))
    return (Adam if name == "Adam" else getattr(paddle.optimizer, name))(**kwargs)


class Adam(paddle.optimizer.Adam):
    """paddle's Adam, through its merged multi-tensor kernel (``use_multi_tensor``, which paddle turns
    on for a class named Adam or Momentum only, hence the name) at every step where each trainable
    parameter has a dense gradient: the same update within one float rounding, 3.5x faster on CPU
    (DeepFM's 840k x 17 table: 73 -> 19 ms a step on one thread). Other steps run the per-parameter
    kernel: a row-sparse gradient (lazy or not), which the merged kernel cannot take, or a parameter
    without a gradient (not used yet), which it would not skip as paddle's and torch's Adam do. Both
    kernels update the same moments."""

    def __init__(self, **kwargs):
        super().__init__(use_multi_tensor=True, **kwargs)

    def step(self):
        grads = [p._grad_ivar() for p in self._parameter_list if not p.stop_gradient]
        self._use_multi_tensor = all(g is not None and not g.is_selected_rows() for g in grads)
        super().step()


def unwrap(model):
    """The network itself, also when paddle.DataParallel wraps it."""
    return getattr(model, "_layers", model)


class SparseGradients:
    """For models whose embedding tables can take row-sparse gradients (class DygraphModel(
    SparseGradients, BaseDygraphModel)): the key. Under data parallel, row-sparse gradients are
    exchanged as rows (tools/utils/parallel.py), dense ones all-reduced."""
    config_spec = {SPARSE_GRADIENTS: Param(bool, default=False, help="row-sparse embedding gradients (faster; under "
                                                                     "data parallel only the touched rows travel)")}


class BaseDygraphModel:
    # Names of the label columns (the first is the one the default loss reads). None: the data set's
    # labels (its schema's Label features), read when the config is checked.
    label_names = None
    # Declared config keys {dotted key: Param}, merged over the class hierarchy with the optimizer
    # keys and the reader's (see ``full_config_spec``); checked before any work, settable with -o.
    config_spec = {}
    # Where the optimizer's learning rate lives (declared with LEARNING_RATE unless config_spec
    # declares that key itself).
    learning_rate_key = f"{OPTIMIZER}.learning_rate"
    # False: runner.use_fleet / several launched processes are refused up front.
    supports_data_parallel = True
    # {dotted key: value} the model needs under runner.use_fleet (data parallel); others are refused.
    data_parallel_requires = {}

    @classmethod
    def model_spec(cls):
        """The optimizer keys and every ``config_spec`` along the class hierarchy (subclass wins; a
        key mapped to None is one the subclass does not read)."""
        spec = {**OPTIMIZER_SPEC, cls.learning_rate_key: LEARNING_RATE}
        for klass in reversed(cls.__mro__):
            spec.update(vars(klass).get("config_spec", {}))
        return {key: param for key, param in spec.items() if param is not None}

    @classmethod
    def full_config_spec(cls, config):
        """Every key a run of this model reads: the keys its readers declare (the data set's
        ``config_spec``: vocabulary sizes, side files), then the model's."""
        spec = {}
        for mode in ("train", "infer"):
            spec.update(getattr(load_reader(config, mode), "config_spec", {}))
        spec.update(cls.model_spec())
        return spec

    @classmethod
    def defaults(cls, **values):
        """``config_spec`` entries giving keys of ``hyper_parameters`` another default for this model
        (e.g. a retrieval model's training mode): ``config_spec = Base.defaults(mode="list")``."""
        spec = cls.model_spec()
        return {f"{HP}.{name}": spec[f"{HP}.{name}"].but(default=value) for name, value in values.items()}

    @classmethod
    def model_name(cls):
        """The model folder's name, e.g. 'deepfm', for messages."""
        return os.path.basename(os.path.dirname(os.path.abspath(inspect.getfile(cls))))

    def check_config(self, config):
        """Rules across keys that a per-key spec cannot say; raise SpecError naming a key."""
        check_optimizer_config(config)
        if type(self).label_names is None:  # (multi-task models name theirs by their tasks)
            self.label_names = tuple(f.name for f in self.schema(config).labels)

    def schema(self, config):
        """The declared features of the data the config's reader names (runner.train_reader_path)."""
        return reader_schema(config)

    def create_model(self, config):
        raise NotImplementedError

    def create_feeds(self, batch_data, config):
        """-> (label, batch): the label tensor and the batch dict the network takes."""
        return batch_data[self.label_names[0]], batch_data

    def create_loss(self, pred, label):
        return F.binary_cross_entropy(pred, label.astype("float32").reshape(pred.shape))

    def create_optimizer(self, dy_model, config):
        return build_optimizer(dy_model.parameters(), config, self.learning_rate_key)

    def training_data(self, dataset, config):
        """What the trainer iterates over: the training rows (a paradigm may wrap them, e.g. into a
        task sampler)."""
        return dataset

    def create_evaluation(self, config, log):
        """The evaluation protocol tools/infer.py runs (models.common.evaluation): ranking metrics."""
        return RankingEvaluation(self, config, log)

    def create_metrics(self, mode="train"):
        """-> (metric objects, names). Training logs use a constant-memory running AUC;
        evaluation uses exact AUC and logloss."""
        if mode == "train":
            return [RunningAUC("auc")], ["auc"]
        return [AUC("auc"), LogLoss("logloss")], ["auc", "logloss"]

    def train_forward(self, dy_model, metrics_list, batch_data, config):
        label, inputs = self.create_feeds(batch_data, config)
        pred = dy_model(inputs)
        loss = self.create_loss(pred, label)
        for metric in metrics_list:
            metric.update(pred.detach(), label)
        return loss, metrics_list, None

    def batch_rows(self, batch_data):
        """Number of instances in a batch (for loss averaging and ins/s)."""
        first = next(iter(batch_data.values())) if isinstance(batch_data, dict) else batch_data[0]
        return int(first.shape[0])

    def serving_graphs(self, model, config):
        """{name: models.common.export.Served}: the functions tools/export.py saves as inference
        graphs and tools/serve.py serves; a ranking model's is its score per row (named as in
        the prediction file), answering POST /rank."""
        return {"rank": Served(model, names=[f"prob_{self.label_names[0]}"])}

    def serving_catalog(self, model, config):
        """What a retrieval model's export indexes: {"ids": item ids, "columns": the item tower's
        inputs for them, "raw_ids": optional ids of the source data}; None: no catalog."""
        return None

    def serving_tables(self, config):
        """{table name: (key feature, [feature names])}: features export stores per key value (from
        the training rows), so that a server fills them from an id alone (a recall-then-rank
        service: a candidate item's features); None: none."""
        return None

    def infer_forward(self, dy_model, metrics_list, batch_data, config):
        """-> (metrics, outputs): ``outputs`` maps column names (each label, ``prob_<label>``) to
        per-sample values, for the prediction file."""
        label, inputs = self.create_feeds(batch_data, config)
        pred = dy_model(inputs)
        for metric in metrics_list:
            metric.update(pred, label)
        name = self.label_names[0]
        return metrics_list, {name: label, f"prob_{name}": pred}

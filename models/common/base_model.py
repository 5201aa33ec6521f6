"""Base class for a model folder's ``DygraphModel``, with PaddleRec's method names.

A batch is a dict ``{column name: tensor}`` (see models.common.data); the network takes the whole
dict and reads its features by name. A binary-classification model only writes
``create_model``; the defaults give it BCE loss on the label ``label_names[0]``, Adam from
``hyper_parameters.optimizer``, a running AUC in training logs and exact AUC + logloss for
evaluation.
"""
import paddle
import paddle.nn.functional as F

from models.common.metrics import AUC, LogLoss, RunningAUC


class BaseDygraphModel:
    # Dotted config sections under which ``-o`` may add keys the config file does not have.
    open_sections = ()
    # Config keys the model cannot run without (checked with the runner's own keys).
    required_keys = ()
    # Names of the label columns, used for the per-sample prediction CSV.
    label_names = ("label",)

    def create_model(self, config):
        raise NotImplementedError

    def create_feeds(self, batch_data, config):
        """-> (label, batch): the label tensor and the batch dict the network takes."""
        return batch_data[self.label_names[0]], batch_data

    def create_loss(self, pred, label):
        return F.binary_cross_entropy(pred, label.astype("float32").reshape(pred.shape))

    def create_optimizer(self, dy_model, config):
        learning_rate = config.get("hyper_parameters.optimizer.learning_rate", 0.001)
        weight_decay = config.get("hyper_parameters.optimizer.weight_decay", None)
        return paddle.optimizer.Adam(
            learning_rate=learning_rate, parameters=dy_model.parameters(), weight_decay=weight_decay,
            lazy_mode=config.get("hyper_parameters.optimizer.lazy_mode", False))

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

    def infer_forward(self, dy_model, metrics_list, batch_data, config):
        """-> (metrics, outputs): ``outputs`` maps column names (each label, ``prob_<label>``) to
        per-sample values, for the prediction file."""
        label, inputs = self.create_feeds(batch_data, config)
        pred = dy_model(inputs)
        for metric in metrics_list:
            metric.update(pred, label)
        name = self.label_names[0]
        return metrics_list, {name: label, f"prob_{name}": pred}

"""MetaHeac wrapper for the shared runners.

One trainer step is one meta-step (``meta_loss``): for each of the ``task_count`` tasks of the
meta-batch, one SGD step with ``local_lr`` on the support loss gives fast weights; the query loss
under the fast weights, averaged over the tasks, is what the trainer back-propagates and Adam
(``global_learning_rate``) minimises.

Fast weights of the embedding table cover only the rows the task uses (models.common.meta), so a
meta-step never touches the whole table and the table's gradient is row-sparse.
"""
import numpy as np
import paddle

from lookalike_data import SEQ_LENS
from models.common.base_model import BaseDygraphModel
from models.common.meta import binary_cross_entropy, compact_ids, gather_rows, inner_sgd_step
from models.common.spec import Param, positive_int, positive_ints
from net import TABLE, MetaHeacLayer

HP = ("max_idxs", "embed_dim", "mlp_dims", "num_expert", "num_output", "task_count", "batch_size", "local_lr",
      "optimizer.global_learning_rate", "optimizer.local_test_learning_rate")


def _tensor(x):
    return x if isinstance(x, paddle.Tensor) else paddle.to_tensor(x)


def _layer(model):
    return getattr(model, "_layers", model)


def task_params(model, unique_ids):
    """The weights one task works with: every dense parameter and the table rows ``unique_ids``."""
    params = {name: p for name, p in model.named_parameters() if name != TABLE}
    params[TABLE] = gather_rows(model.embedding.weight, unique_ids)
    return params


def meta_loss(model, support, query, local_lr, first_order, loss_fn):
    """Mean query loss over tasks after one inner SGD step per task.

    ``support`` / ``query``: (ids [T, B, 63], lengths [T, B, 7], labels [T, B]) per-field ids.
    -> (loss, query predictions [T, B]).
    """
    losses, preds = [], []
    for t in range(support[0].shape[0]):
        s_ids, q_ids = model.global_ids(support[0][t]), model.global_ids(query[0][t])
        unique, (s_local, q_local) = compact_ids([s_ids, q_ids])
        params = task_params(model, unique)
        support_loss = loss_fn(model(s_local, support[1][t], params), support[2][t])
        fast = inner_sgd_step(support_loss, params, local_lr, first_order)
        pred = model(q_local, query[1][t], fast)
        losses.append(loss_fn(pred, query[2][t]))
        preds.append(pred)
    return paddle.stack(losses).mean(), paddle.stack(preds)


class DygraphModel(BaseDygraphModel):
    required_keys = tuple(f"hyper_parameters.{k}" for k in HP) + ("runner.infer_train_epoch",)
    config_spec = {
        "hyper_parameters.max_idxs": Param(list, non_empty=True, items=Param(list, non_empty=True, items=Param(int, min=0))),
        "hyper_parameters.embed_dim": positive_int(),
        "hyper_parameters.mlp_dims": positive_ints(),
        "hyper_parameters.dropout": Param(float, min=0, below=1, required=False, default=0.0),
        "hyper_parameters.num_expert": positive_int(),
        "hyper_parameters.num_output": positive_int(),
        "hyper_parameters.task_count": positive_int(),
        "hyper_parameters.batch_size": positive_int(),
        "hyper_parameters.local_lr": Param(float, min=0),
        "hyper_parameters.first_order": Param(bool, required=False, default=False),
        "hyper_parameters.optimizer.local_test_learning_rate": Param(float, above=0),
        "runner.infer_train_epoch": Param(int, min=0),
        "runner.test_hot_data_dir": Param(str, required=False),
        "runner.test_cold_data_dir": Param(str, required=False),
    }
    # Meta-training: Adam (or hyper_parameters.optimizer.class) with global_learning_rate.
    learning_rate_key = "hyper_parameters.optimizer.global_learning_rate"
    learning_rate_default = None  # required
    # Row-sparse table gradients through second-order MAML: paddle.DataParallel crashes on them.
    supports_data_parallel = False
    evaluator_script = "infer_meta.py"  # fine-tune-then-test per task, not tools/infer.py

    def __init__(self):
        self.replaced_draws = 0  # task draws with replacement (task smaller than batch_size), this run

    def create_model(self, config):
        hp = lambda key, default=None: config.get(f"hyper_parameters.{key}", default)  # noqa: E731
        return MetaHeacLayer(hp("max_idxs"), SEQ_LENS, hp("embed_dim"), hp("mlp_dims"), hp("num_expert"),
                             hp("num_output"), dropout=hp("dropout", 0.0))

    def create_loss(self, pred, label):
        return binary_cross_entropy(pred, label)  # twice differentiable (paddle's BCE is not)

    def create_feeds(self, batch_data, config):
        """-> (support, query, replaced): support/query = (ids, lengths, labels) tensors."""
        tensors = [_tensor(x) for x in batch_data]
        return tuple(tensors[0:3]), tuple(tensors[3:6]), int(tensors[6])

    def train_forward(self, dy_model, metrics_list, batch_data, config):
        support, query, replaced = self.create_feeds(batch_data, config)
        loss, preds = meta_loss(
            _layer(dy_model), support, query, config.get("hyper_parameters.local_lr"),
            config.get("hyper_parameters.first_order", False), self.create_loss)
        for metric in metrics_list:
            metric.update(preds.detach(), query[2])
        self.replaced_draws += replaced
        return loss, metrics_list, {"replaced_draws": self.replaced_draws}

    def batch_rows(self, batch_data):
        """Support + query rows of a meta-batch."""
        ids = batch_data[0]
        return 2 * int(np.prod(ids.shape[:2]))

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

from models.common.datasets.lookalike import AD, DYNAMIC, STATIC
from models.common.base_model import BaseDygraphModel
from models.common.meta import binary_cross_entropy, compact_ids, gather_rows, inner_sgd_step
from models.common.spec import Param, positive_int, positive_ints
from .net import TABLE, MetaHeacLayer



def _tensors(batch):
    return {k: v if isinstance(v, paddle.Tensor) else paddle.to_tensor(v) for k, v in batch.items()}


def task_batch(batch, t):
    """Task t of a meta-batch half ({column: [T, B, ...]}) -> {column: [B, ...]}."""
    return {k: v[t] for k, v in batch.items()}


def _layer(model):
    return getattr(model, "_layers", model)


def task_params(model, unique_ids):
    """The weights one task works with: every dense parameter and the table rows ``unique_ids``."""
    params = {name: p for name, p in model.named_parameters() if name != TABLE}
    params[TABLE] = gather_rows(model.embedding.weight, unique_ids)
    return params


def meta_loss(model, support, query, local_lr, first_order, loss_fn):
    """Mean query loss over tasks after one inner SGD step per task.

    ``support`` / ``query``: batches {column: tensor [T, B, ...]} of T tasks.
    -> (loss, query predictions [T, B]).
    """
    losses, preds = [], []
    for t in range(support["label"].shape[0]):
        s_batch, q_batch = task_batch(support, t), task_batch(query, t)
        unique, (s_local, q_local) = compact_ids([model.global_ids(s_batch), model.global_ids(q_batch)])
        params = task_params(model, unique)
        support_loss = loss_fn(model(s_batch, params, s_local), s_batch["label"])
        fast = inner_sgd_step(support_loss, params, local_lr, first_order)
        pred = model(q_batch, fast, q_local)
        losses.append(loss_fn(pred, q_batch["label"]))
        preds.append(pred)
    return paddle.stack(losses).mean(), paddle.stack(preds)


class DygraphModel(BaseDygraphModel):
    config_spec = {
        "hyper_parameters.mlp_dims": positive_ints(help="each expert's ReLU layer sizes; the last is the hidden size"),
        "hyper_parameters.dropout": Param(float, min=0, below=1, default=0.0, help="dropout in the experts"),
        "hyper_parameters.init": Param(str, default="official", choices=("official", "paddlerec"),
                                       help="initialisation: the official code's (torch defaults) or PaddleRec's"),
        "hyper_parameters.num_expert": positive_int(help="hybrid experts"),
        "hyper_parameters.num_output": positive_int(help="critics"),
        "hyper_parameters.task_count": positive_int(help="tasks (ads) per meta-batch"),
        "hyper_parameters.batch_size": positive_int(help="support = query = fine-tuning batch size"),
        "hyper_parameters.local_lr": Param(float, min=0, help="inner SGD step of meta-training"),
        "hyper_parameters.first_order": Param(bool, default=False,
                                              help="first-order MAML (no gradient through the inner step)"),
        "hyper_parameters.optimizer.global_learning_rate": Param(float, above=0,
                                                                 help="meta-training optimizer's learning rate"),
        "hyper_parameters.optimizer.local_test_learning_rate": Param(float, above=0,
                                                                     help="Adam learning rate of per-task fine-tuning"),
        "runner.infer_train_epoch": Param(int, min=0, help="fine-tuning passes over a test task's seed rows"),
        "runner.test_hot_data_dir": Param(str, required=False, help="hot test tasks (stage1 / stage2 files)"),
        "runner.test_cold_data_dir": Param(str, required=False, help="cold test tasks (stage1 / stage2 files)"),
    }
    learning_rate_key = "hyper_parameters.optimizer.global_learning_rate"
    # Row-sparse table gradients through second-order MAML: paddle.DataParallel crashes on them.
    supports_data_parallel = False
    evaluator_script = "infer_meta.py"  # fine-tune-then-test per task, not tools/infer.py

    def __init__(self):
        self.replaced_draws = 0  # task draws with replacement (task smaller than batch_size), this run

    def create_model(self, config):
        hp = lambda key: config.get(f"hyper_parameters.{key}")  # noqa: E731
        return MetaHeacLayer(self.schema(config), STATIC + DYNAMIC, AD, hp("mlp_dims"), hp("num_expert"),
                             hp("num_output"), dropout=hp("dropout"), init=hp("init"))

    def create_loss(self, pred, label):
        return binary_cross_entropy(pred, label)  # twice differentiable (paddle's BCE is not)

    def create_feeds(self, batch_data, config):
        """-> (support, query, replaced): support/query = {column: tensor [T, B, ...]}."""
        return _tensors(batch_data["support"]), _tensors(batch_data["query"]), int(batch_data["replaced"])

    def train_forward(self, dy_model, metrics_list, batch_data, config):
        support, query, replaced = self.create_feeds(batch_data, config)
        loss, preds = meta_loss(
            _layer(dy_model), support, query, config.get("hyper_parameters.local_lr"),
            config.get("hyper_parameters.first_order"), self.create_loss)
        for metric in metrics_list:
            metric.update(preds.detach(), query["label"])
        self.replaced_draws += replaced
        return loss, metrics_list, {"replaced_draws": self.replaced_draws}

    def batch_rows(self, batch_data):
        """Support + query rows of a meta-batch."""
        return 2 * int(np.prod(batch_data["support"]["label"].shape[:2]))

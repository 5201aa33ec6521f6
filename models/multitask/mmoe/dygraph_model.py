"""MMoE wrapper for the shared runners: tasks from ``hyper_parameters.tasks`` (name, label,
type binary|regression, loss weight); loss = weighted sum of the task losses; metrics per task
(``auc_<task>`` / ``logloss_<task>`` for binary tasks, ``rmse_<task>`` for regression ones).
The data set is the one the config's reader names (census or aliccp)."""
from models.common.datasets import aliccp, census
from models.common.multitask import MultiTaskModel, check_task_labels
from models.common.spec import Param, positive_int, positive_ints
from .net import MMoELayer


class DygraphModel(MultiTaskModel):
    required_keys = ("hyper_parameters.tasks", "hyper_parameters.expert_num", "hyper_parameters.expert_sizes",
                     "hyper_parameters.tower_sizes")
    config_spec = {
        **aliccp.CONFIG_SPEC,
        **census.CONFIG_SPEC,
        "hyper_parameters.expert_num": positive_int(),
        "hyper_parameters.expert_sizes": positive_ints(),
        "hyper_parameters.tower_sizes": positive_ints(),
        "hyper_parameters.sparse_gradients": Param(bool, required=False, default=False),
    }
    data_parallel_requires = {"hyper_parameters.sparse_gradients": False}

    def check_config(self, config):
        super().check_config(config)
        check_task_labels(self.tasks, self.schema(config))

    def create_model(self, config):
        return MMoELayer(self.schema(config), self.tasks_of(config), config.get("hyper_parameters.expert_num"),
                         config.get("hyper_parameters.expert_sizes"), config.get("hyper_parameters.tower_sizes"),
                         sparse=config.get("hyper_parameters.sparse_gradients", False))

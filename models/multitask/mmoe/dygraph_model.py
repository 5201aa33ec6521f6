"""MMoE wrapper for the shared runners: tasks from ``hyper_parameters.tasks`` (name, label,
type binary|regression, loss weight); loss = weighted sum of the task losses; metrics per task
(``auc_<task>`` / ``logloss_<task>`` for binary tasks, ``rmse_<task>`` for regression ones).
The data set is the one the config's reader names (census or aliccp)."""
from models.common.base_model import SPARSE_GRADIENTS, SPARSE_GRADIENTS_SPEC
from models.common.multitask import MultiTaskModel, check_task_labels
from models.common.spec import positive_int, positive_ints
from .net import MMoELayer


class DygraphModel(MultiTaskModel):
    config_spec = {
        "hyper_parameters.expert_num": positive_int(help="number of experts"),
        "hyper_parameters.expert_sizes": positive_ints(help="each expert's ReLU layer sizes"),
        "hyper_parameters.tower_sizes": positive_ints(help="each task tower's ReLU layer sizes (then one output)"),
        **SPARSE_GRADIENTS_SPEC,
    }
    data_parallel_requires = {SPARSE_GRADIENTS: False}

    def check_config(self, config):
        super().check_config(config)
        check_task_labels(self.tasks, self.schema(config))

    def create_model(self, config):
        return MMoELayer(self.schema(config), self.tasks_of(config), config.get("hyper_parameters.expert_num"),
                         config.get("hyper_parameters.expert_sizes"), config.get("hyper_parameters.tower_sizes"),
                         sparse=config.get(SPARSE_GRADIENTS))

"""MMoE wrapper for the shared runners: tasks from ``hyper_parameters.tasks`` (name, label,
type binary|regression, loss weight); loss = weighted sum of the task losses; metrics per task
(``auc_<task>`` / ``logloss_<task>`` for binary tasks, ``rmse_<task>`` for regression ones).
The data set is the one the config's reader names (census or aliccp)."""
from models.common.base_model import SPARSE_GRADIENTS, SparseGradients
from models.common.multitask import MultiTaskModel
from models.common.spec import positive_int, positive_ints
from .net import MMoELayer


class DygraphModel(SparseGradients, MultiTaskModel):
    config_spec = {
        "hyper_parameters.expert_num": positive_int(help="number of experts"),
        "hyper_parameters.expert_sizes": positive_ints(help="each expert's ReLU layer sizes"),
        "hyper_parameters.tower_sizes": positive_ints(help="each task tower's ReLU layer sizes (then one output)"),
    }

    def create_model(self, config):
        return MMoELayer(self.schema(config), self.tasks_of(config), config.get("hyper_parameters.expert_num"),
                         config.get("hyper_parameters.expert_sizes"), config.get("hyper_parameters.tower_sizes"),
                         sparse=config.get(SPARSE_GRADIENTS))

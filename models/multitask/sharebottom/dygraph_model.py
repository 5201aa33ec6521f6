"""Share-Bottom wrapper for the shared runners: the same tasks, losses and metrics as MMoE
(``hyper_parameters.tasks``; ``auc_<task>`` / ``rmse_<task>``), a shared bottom MLP instead of
the experts. The data set is the one the config's reader names (census or aliccp)."""
from models.common.base_model import SPARSE_GRADIENTS, SparseGradients
from models.common.multitask import MultiTaskModel
from models.common.spec import positive_ints
from .net import ShareBottomLayer


class DygraphModel(SparseGradients, MultiTaskModel):
    config_spec = {
        "hyper_parameters.bottom_sizes": positive_ints(help="the shared bottom MLP's ReLU layer sizes"),
        "hyper_parameters.tower_sizes": positive_ints(help="each task tower's ReLU layer sizes (then one output)"),
    }

    def create_model(self, config):
        return ShareBottomLayer(self.schema(config), self.tasks_of(config),
                                config.get("hyper_parameters.bottom_sizes"), config.get("hyper_parameters.tower_sizes"),
                                sparse=config.get(SPARSE_GRADIENTS))

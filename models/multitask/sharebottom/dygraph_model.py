"""Share-Bottom wrapper for the shared runners: the same tasks, losses and metrics as MMoE
(``hyper_parameters.tasks``; ``auc_<task>`` / ``rmse_<task>``), a shared bottom MLP instead of
the experts. The data set is the one the config's reader names (census or aliccp)."""
from models.common.datasets import aliccp, census
from models.common.multitask import MultiTaskModel, check_task_labels
from models.common.spec import Param, positive_ints
from .net import ShareBottomLayer


class DygraphModel(MultiTaskModel):
    required_keys = ("hyper_parameters.tasks", "hyper_parameters.bottom_sizes", "hyper_parameters.tower_sizes")
    config_spec = {
        **aliccp.CONFIG_SPEC,
        **census.CONFIG_SPEC,
        "hyper_parameters.bottom_sizes": positive_ints(),
        "hyper_parameters.tower_sizes": positive_ints(),
        "hyper_parameters.sparse_gradients": Param(bool, required=False, default=False),
    }
    data_parallel_requires = {"hyper_parameters.sparse_gradients": False}

    def check_config(self, config):
        super().check_config(config)
        check_task_labels(self.tasks, self.schema(config))

    def create_model(self, config):
        return ShareBottomLayer(self.schema(config), self.tasks_of(config),
                                config.get("hyper_parameters.bottom_sizes"), config.get("hyper_parameters.tower_sizes"),
                                sparse=config.get("hyper_parameters.sparse_gradients", False))

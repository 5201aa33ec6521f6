"""DeepFM wrapper for the shared runners (PaddleRec method names; defaults from the base class:
BCE loss, Adam, running AUC in training logs, exact AUC + logloss for evaluation)."""
from models.common.base_model import SPARSE_GRADIENTS, BaseDygraphModel, SparseGradients
from models.common.spec import positive_ints

from .net import DeepFMLayer


class DygraphModel(SparseGradients, BaseDygraphModel):
    config_spec = {
        "hyper_parameters.fc_sizes": positive_ints(help="the DNN's ReLU layer sizes (a linear output unit follows)"),
    }

    def create_model(self, config):
        return DeepFMLayer(self.schema(config), config.get("hyper_parameters.fc_sizes"),
                           sparse=config.get(SPARSE_GRADIENTS))

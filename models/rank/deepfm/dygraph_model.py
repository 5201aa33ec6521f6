"""DeepFM wrapper for the shared runners (PaddleRec method names; defaults from the base class:
BCE loss, Adam, running AUC in training logs, exact AUC + logloss for evaluation)."""
from models.common.base_model import BaseDygraphModel
from models.common.spec import Param, positive_int, positive_ints
from .net import DeepFMLayer

REQUIRED = ("sparse_feature_number", "sparse_feature_dim", "fc_sizes")


class DygraphModel(BaseDygraphModel):
    required_keys = tuple(f"hyper_parameters.{k}" for k in REQUIRED)
    config_spec = {
        "hyper_parameters.sparse_feature_number": positive_int(),
        "hyper_parameters.sparse_feature_dim": positive_int(),
        "hyper_parameters.fc_sizes": positive_ints(),
        "hyper_parameters.sparse_gradients": Param(bool, required=False, default=False),
    }
    label_names = ("click",)
    data_parallel_requires = {"hyper_parameters.sparse_gradients": False}  # DataParallel all-reduces dense grads

    def create_model(self, config):
        return DeepFMLayer(self.schema(config), config.get("hyper_parameters.fc_sizes"),
                           sparse=config.get("hyper_parameters.sparse_gradients", False))

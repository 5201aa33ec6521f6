"""Pretrained-vector two-tower wrapper for the shared runners (BCE, Adam, AUC from the base class)."""
from models.common.base_model import BaseDygraphModel
from models.common.spec import Param, positive_int, positive_ints
from .net import SCORES, PretrainedTwoTower


class DygraphModel(BaseDygraphModel):
    required_keys = ("hyper_parameters.vector_dim", "hyper_parameters.tower_dims")
    config_spec = {
        "hyper_parameters.vector_dim": positive_int(),
        "hyper_parameters.tower_dims": positive_ints(),
        "hyper_parameters.score": Param(str, required=False, default="product", choices=SCORES),
        "hyper_parameters.temperature": Param(float, above=0, required=False, default=1.0),
    }
    label_names = ("label",)

    def create_model(self, config):
        hp = lambda key, default=None: config.get(f"hyper_parameters.{key}", default)  # noqa: E731
        return PretrainedTwoTower(hp("vector_dim"), hp("tower_dims"), hp("score", "product"), hp("temperature", 1.0))

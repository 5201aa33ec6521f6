"""Pretrained-vector two-tower wrapper for the shared runners (BCE, Adam, AUC from the base class)."""
from models.common.base_model import BaseDygraphModel
from models.common.spec import Param, positive_ints
from .net import SCORES, PretrainedTwoTower


class DygraphModel(BaseDygraphModel):
    config_spec = {
        "hyper_parameters.tower_dims": positive_ints(help="each tower's ReLU layer sizes"),
        "hyper_parameters.score": Param(str, default="product", choices=SCORES,
                                        help="product: sigmoid(w.(u*i) + b); dot: sigmoid(u.i / T); cosine: "
                                             "sigmoid(cos(u, i) / T)"),
        "hyper_parameters.temperature": Param(float, above=0, default=1.0, help="T of the dot and cosine scores"),
    }
    label_names = ("label",)

    def create_model(self, config):
        hp = lambda key: config.get(f"hyper_parameters.{key}")  # noqa: E731
        return PretrainedTwoTower(hp("vector_dim"), hp("tower_dims"), hp("score"), hp("temperature"))

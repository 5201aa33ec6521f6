"""MetaHeac wrapper for the shared runners: the network and its keys. Meta-training (task sampler,
meta-step with row-subset fast weights) and the fine-tune-then-test evaluation are the
meta-learning paradigm's (models/common/meta_model.py)."""
from models.common.datasets.lookalike import AD, DYNAMIC, STATIC
from models.common.meta_model import MetaLearningModel
from models.common.spec import Param, positive_int, positive_ints

from .net import MetaHeacLayer


class DygraphModel(MetaLearningModel):
    config_spec = {
        "hyper_parameters.mlp_dims": positive_ints(help="each expert's ReLU layer sizes; the last is the hidden size"),
        "hyper_parameters.dropout": Param(float, min=0, below=1, default=0.0, help="dropout in the experts"),
        "hyper_parameters.init": Param(str, default="official", choices=("official", "paddlerec"),
                                       help="initialisation: the official code's (torch defaults) or PaddleRec's"),
        "hyper_parameters.num_expert": positive_int(help="hybrid experts"),
        "hyper_parameters.num_output": positive_int(help="critics"),
    }

    def create_model(self, config):
        hp = lambda key: config.get(f"hyper_parameters.{key}")  # noqa: E731
        return MetaHeacLayer(self.schema(config), STATIC + DYNAMIC, AD, hp("mlp_dims"), hp("num_expert"),
                             hp("num_output"), dropout=hp("dropout"), init=hp("init"))

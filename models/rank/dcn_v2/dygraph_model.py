"""DCN-v2 wrapper for the shared runners: the network and its keys (loss, optimizer and metrics are
the ranking defaults of the base class; the data set, its schema and its keys come from the
config's reader)."""
from models.common.base_model import SPARSE_GRADIENTS, BaseDygraphModel, SparseGradients
from models.common.spec import Param, positive_int, positive_ints

from .net import STRUCTURES, DCNv2Layer


class DygraphModel(SparseGradients, BaseDygraphModel):
    config_spec = {
        "hyper_parameters.cross_layers": positive_int(default=3, help="cross layers (full-rank W, Eq. 1)"),
        "hyper_parameters.structure": Param(str, choices=STRUCTURES, default="parallel", scoring=True,
                                            help="parallel: [cross; DNN(x0)]; stacked: DNN(cross)"),
        "hyper_parameters.fc_sizes": positive_ints(help="the DNN's ReLU layer sizes"),
    }

    def create_model(self, config):
        hp = lambda key: config.get(f"hyper_parameters.{key}")  # noqa: E731
        return DCNv2Layer(self.schema(config), hp("cross_layers"), hp("fc_sizes"), hp("structure"),
                          sparse=config.get(SPARSE_GRADIENTS))

"""MetaEmb wrapper for the shared runners: tools/trainer.py pre-trains the DeepFM base on the old
items (BCE, Adam, AUC from the base class); the generator's meta-training and the cold-start /
warm-up evaluation are the cold-start paradigm's (models/common/coldstart.py), run by
tools/infer.py (or this folder's infer_warmup.py)."""
from models.common.coldstart import ColdStartModel
from models.common.datasets.movielens import CONTEXT_FEATURES, ID, ITEM_FEATURES
from models.common.spec import Param, positive_ints

from .net import EmbeddingGenerator, MetaEmbDeepFM


class DygraphModel(ColdStartModel):
    config_spec = {
        "hyper_parameters.fc_sizes": positive_ints(help="the DNN's ReLU layer sizes (a linear output unit follows)"),
        "hyper_parameters.init_std": Param(float, above=0, default=0.01, help="embedding init N(0, init_std)"),
        "hyper_parameters.generator_scale": Param(float, above=0, default=5.0,
                                                  help="generated embedding = tanh(x W) / generator_scale"),
    }

    def create_model(self, config):
        return MetaEmbDeepFM(self.schema(config), ID, ITEM_FEATURES, CONTEXT_FEATURES,
                             config.get("hyper_parameters.fc_sizes"), config.get("hyper_parameters.init_std"))

    def serving_tables(self, config):
        # a recall-then-rank service scores candidate items from their ids (see tools/serve.py)
        return {"items": (ID, ITEM_FEATURES), "users": ("user_id", [f for f in CONTEXT_FEATURES if f != "user_id"])}

    def create_generator(self, config):
        dim = config.get("hyper_parameters.embed_dim")
        return EmbeddingGenerator(len(ITEM_FEATURES) * dim, dim, config.get("hyper_parameters.generator_scale"))

"""MetaEmb wrapper for the shared runners: tools/trainer.py pre-trains the DeepFM base on the old
items (BCE, Adam, AUC from the base class); the generator and the cold-start / warm-up protocol
run in infer_warmup.py (tools/infer.py points there)."""
from models.common.base_model import BaseDygraphModel
from models.common.spec import Param, positive_int, positive_ints
from models.common.datasets.movielens import CONTEXT_FEATURES, ID, ITEM_FEATURES
from .net import EmbeddingGenerator, MetaEmbDeepFM


class DygraphModel(BaseDygraphModel):
    required_keys = tuple(f"hyper_parameters.{k}" for k in ("num_items", "num_users", "title_vocab", "embed_dim",
                                                            "fc_sizes")) + ("runner.meta_data_dir", "runner.warm_data_dir")
    config_spec = {
        "hyper_parameters.num_items": positive_int(),
        "hyper_parameters.num_users": positive_int(),
        "hyper_parameters.title_vocab": positive_int(),
        "hyper_parameters.embed_dim": positive_int(),
        "hyper_parameters.fc_sizes": positive_ints(),
        "hyper_parameters.init_std": Param(float, above=0, required=False, default=0.01),
        # generator (meta-training) and warm-up
        "hyper_parameters.alpha": Param(float, min=0, max=1, required=False, default=0.1),
        "hyper_parameters.cold_lr": Param(float, min=0, required=False, default=0.0001),
        "hyper_parameters.meta_learning_rate": Param(float, above=0, required=False, default=0.001),
        "hyper_parameters.meta_epochs": Param(int, min=1, required=False, default=3),
        "hyper_parameters.ids_per_batch": Param(int, min=1, required=False, default=25),
        "hyper_parameters.generator_scale": Param(float, above=0, required=False, default=5.0),
        "hyper_parameters.warm_learning_rate": Param(float, above=0, required=False, default=0.001),
        "hyper_parameters.first_order_meta": Param(bool, required=False, default=False),
        "runner.meta_data_dir": Param(str),
        "runner.warm_data_dir": Param(str),
    }
    label_names = ("label",)
    evaluator_script = "infer_warmup.py"

    def create_model(self, config):
        return MetaEmbDeepFM(self.schema(config), ID, ITEM_FEATURES, CONTEXT_FEATURES,
                             config.get("hyper_parameters.fc_sizes"), config.get("hyper_parameters.init_std", 0.01))

    def create_generator(self, config):
        dim = config.get("hyper_parameters.embed_dim")
        return EmbeddingGenerator(len(ITEM_FEATURES) * dim, dim, config.get("hyper_parameters.generator_scale", 5.0))

"""MetaEmb wrapper for the shared runners: tools/trainer.py pre-trains the DeepFM base on the old
items (BCE, Adam, AUC from the base class); the generator and the cold-start / warm-up protocol
run in infer_warmup.py (tools/infer.py points there)."""
from models.common.base_model import BaseDygraphModel
from models.common.spec import Param, positive_ints
from models.common.datasets.movielens import CONTEXT_FEATURES, ID, ITEM_FEATURES
from .net import EmbeddingGenerator, MetaEmbDeepFM


class DygraphModel(BaseDygraphModel):
    config_spec = {
        "hyper_parameters.fc_sizes": positive_ints(help="the DNN's ReLU layer sizes (a linear output unit follows)"),
        "hyper_parameters.init_std": Param(float, above=0, default=0.01, help="embedding init N(0, init_std)"),
        # generator (meta-training) and warm-up
        "hyper_parameters.alpha": Param(float, min=0, max=1, default=0.1,
                                        help="meta loss = alpha * loss_a + (1 - alpha) * loss_b"),
        "hyper_parameters.cold_lr": Param(float, min=0, default=0.0001,
                                          help="inner step size on the generated embedding"),
        "hyper_parameters.meta_learning_rate": Param(float, above=0, default=0.001,
                                                     help="Adam learning rate of the generator"),
        "hyper_parameters.meta_epochs": Param(int, min=1, default=3,
                                              help="passes over the generator set pairs (a,b), (c,d), (b,c), (d,a), ..."),
        "hyper_parameters.ids_per_batch": Param(int, min=1, default=25, help="IDs per meta-batch and warm-up batch"),
        "hyper_parameters.generator_scale": Param(float, above=0, default=5.0,
                                                  help="generated embedding = tanh(x W) / generator_scale"),
        "hyper_parameters.warm_learning_rate": Param(float, above=0, default=0.001,
                                                     help="Adam learning rate of the new IDs' rows in warm-up"),
        "hyper_parameters.first_order_meta": Param(bool, default=False,
                                                   help="first-order meta-gradient (no gradient through the inner step)"),
        "runner.meta_data_dir": Param(str, help="the generator sets meta_{a,b,c,d}.npz (old items)"),
        "runner.warm_data_dir": Param(str, help="the warm-up batches warm_{a,b,c}.npz (new items)"),
    }
    label_names = ("label",)
    evaluator_script = "infer_warmup.py"

    def create_model(self, config):
        return MetaEmbDeepFM(self.schema(config), ID, ITEM_FEATURES, CONTEXT_FEATURES,
                             config.get("hyper_parameters.fc_sizes"), config.get("hyper_parameters.init_std"))

    def create_generator(self, config):
        dim = config.get("hyper_parameters.embed_dim")
        return EmbeddingGenerator(len(ITEM_FEATURES) * dim, dim, config.get("hyper_parameters.generator_scale"))

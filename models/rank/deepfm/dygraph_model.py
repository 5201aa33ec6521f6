"""DeepFM wrapper for the shared runners (PaddleRec method names; defaults from the base class:
BCE loss, Adam, running AUC in training logs, exact AUC + logloss for evaluation)."""
from models.common.base_model import BaseDygraphModel
from models.common.spec import Param, positive_int, positive_ints
from net import DeepFMLayer

REQUIRED = ("sparse_feature_number", "sparse_feature_dim", "dense_input_dim", "sparse_inputs_slots", "fc_sizes")


class DygraphModel(BaseDygraphModel):
    required_keys = tuple(f"hyper_parameters.{k}" for k in REQUIRED)
    config_spec = {
        "hyper_parameters.sparse_feature_number": positive_int(),
        "hyper_parameters.sparse_feature_dim": positive_int(),
        "hyper_parameters.dense_input_dim": positive_int(),
        "hyper_parameters.sparse_inputs_slots": Param(int, min=2),  # the label slot + at least one field
        "hyper_parameters.fc_sizes": positive_ints(),
        "hyper_parameters.sparse_gradients": Param(bool, required=False, default=False),
    }
    label_names = ("click",)
    data_parallel_requires = {"hyper_parameters.sparse_gradients": False}  # DataParallel all-reduces dense grads

    def create_model(self, config):
        hp = lambda key: config.get(f"hyper_parameters.{key}")  # noqa: E731
        return DeepFMLayer(
            sparse_feature_number=hp("sparse_feature_number"),
            sparse_feature_dim=hp("sparse_feature_dim"),
            dense_feature_dim=hp("dense_input_dim"),
            sparse_num_field=hp("sparse_inputs_slots") - 1,  # PaddleRec counts the label slot too
            layer_sizes=hp("fc_sizes"),
            sparse=config.get("hyper_parameters.sparse_gradients", False),
        )

    def create_feeds(self, batch_data, config):
        label, sparse_ids, dense_values = batch_data
        return label, [sparse_ids, dense_values]

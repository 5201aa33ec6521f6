"""ESMM wrapper for the shared runners.

Losses (over all impressions): ``weight_ctr`` * logloss(pCTR, click) + ``weight_ctcvr`` *
logloss(pCTCVR, purchase). Metrics: ``auc_ctr`` (all impressions), ``auc_ctcvr`` (all
impressions) and ``auc_cvr`` - pCVR against purchase on the clicked impressions only, as the
paper evaluates CVR; logloss of CTR and CTCVR when evaluating. Training logs and infer use the
same metric code on the same network outputs."""
from models.common.datasets import aliccp
from models.common.multitask import MetricSpec, MultiTaskModel, Task
from models.common.spec import Param, positive_ints
from .net import ESMMLayer


class DygraphModel(MultiTaskModel):
    required_keys = aliccp.REQUIRED + ("hyper_parameters.ctr_fc_sizes", "hyper_parameters.cvr_fc_sizes")
    config_spec = {
        **aliccp.CONFIG_SPEC,
        "hyper_parameters.tasks": Param(list, required=False),  # ESMM's tasks are fixed: ctr, ctcvr
        "hyper_parameters.ctr_fc_sizes": positive_ints(),
        "hyper_parameters.cvr_fc_sizes": positive_ints(),
        "hyper_parameters.weight_ctr": Param(float, min=0, required=False, default=1.0),
        "hyper_parameters.weight_ctcvr": Param(float, min=0, required=False, default=1.0),
        "hyper_parameters.embedding_init_std": Param(float, above=0, required=False),
        "hyper_parameters.sparse_gradients": Param(bool, required=False, default=False),
    }
    data_parallel_requires = {"hyper_parameters.sparse_gradients": False}

    def tasks_of(self, config):
        if config.get("hyper_parameters.tasks") is not None:
            from models.common.spec import SpecError
            raise SpecError("'hyper_parameters.tasks': ESMM's tasks are fixed (ctr on click, ctcvr on purchase); "
                            "set their loss weights with hyper_parameters.weight_ctr / weight_ctcvr")
        return [Task("ctr", "click", "binary", config.get("hyper_parameters.weight_ctr", 1.0)),
                Task("ctcvr", "purchase", "binary", config.get("hyper_parameters.weight_ctcvr", 1.0))]

    def check_config(self, config):
        super().check_config(config)
        aliccp.check_max_len(config)

    def metric_specs(self, tasks, mode):
        specs = super().metric_specs(tasks, mode)
        # CVR = P(purchase | click): evaluated on clicked impressions only.
        return specs + [MetricSpec("auc_cvr", "auc", "cvr", "purchase", where="click")]

    def create_model(self, config):
        return ESMMLayer(self.schema(config), config.get("hyper_parameters.ctr_fc_sizes"),
                         config.get("hyper_parameters.cvr_fc_sizes"),
                         sparse=config.get("hyper_parameters.sparse_gradients", False),
                         init_std=config.get("hyper_parameters.embedding_init_std"))

"""ESMM wrapper for the shared runners.

Losses (over all impressions): ``weight_ctr`` * logloss(pCTR, click) + ``weight_ctcvr`` *
logloss(pCTCVR, purchase). Metrics: ``auc_ctr`` (all impressions), ``auc_ctcvr`` (all
impressions) and ``auc_cvr`` - pCVR against purchase on the clicked impressions only, as the
paper evaluates CVR; logloss of CTR and CTCVR when evaluating. Training logs and infer use the
same metric code on the same network outputs."""
from models.common.base_model import SPARSE_GRADIENTS, SparseGradients
from models.common.multitask import TASKS, MetricSpec, MultiTaskModel, Task
from models.common.spec import Param, SpecError, positive_ints
from .net import ESMMLayer


class DygraphModel(SparseGradients, MultiTaskModel):
    config_spec = {
        TASKS: Param(list, required=False, help="not settable: ESMM's tasks are fixed (ctr on click, ctcvr on "
                                                "purchase)"),
        "hyper_parameters.ctr_fc_sizes": positive_ints(help="the CTR tower's ReLU layer sizes (then one logit)"),
        "hyper_parameters.cvr_fc_sizes": positive_ints(help="the CVR tower's ReLU layer sizes (then one logit)"),
        "hyper_parameters.weight_ctr": Param(float, min=0, default=1.0, help="loss weight of logloss(pCTR, click)"),
        "hyper_parameters.weight_ctcvr": Param(float, min=0, default=1.0,
                                               help="loss weight of logloss(pCTCVR, purchase)"),
        "hyper_parameters.embedding_init_std": Param(float, above=0, required=False,
                                                     help="std of the normal embedding init (default 1/sqrt(dim))"),
    }

    def tasks_of(self, config):
        if config.get(TASKS) is not None:
            raise SpecError("'hyper_parameters.tasks': ESMM's tasks are fixed (ctr on click, ctcvr on purchase); "
                            "set their loss weights with hyper_parameters.weight_ctr / weight_ctcvr")
        return [Task("ctr", "click", "binary", config.get("hyper_parameters.weight_ctr")),
                Task("ctcvr", "purchase", "binary", config.get("hyper_parameters.weight_ctcvr"))]

    def metric_specs(self, tasks, mode):
        specs = super().metric_specs(tasks, mode)
        # CVR = P(purchase | click): evaluated on clicked impressions only.
        return specs + [MetricSpec("auc_cvr", "auc", "cvr", "purchase", where="click")]

    def create_model(self, config):
        return ESMMLayer(self.schema(config), config.get("hyper_parameters.ctr_fc_sizes"),
                         config.get("hyper_parameters.cvr_fc_sizes"),
                         sparse=config.get(SPARSE_GRADIENTS),
                         init_std=config.get("hyper_parameters.embedding_init_std"))

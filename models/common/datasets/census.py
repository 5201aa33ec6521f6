"""UCI census-income (KDD) as the multi-task models read it: the columnar CSV written by
datasets/census/run.sh - a header row, then one person per row: the label columns (``income``:
income > 50K; ``marital``: never married) and ``hyper_parameters.feature_dim`` (or the ``feature_dim`` of run.sh's meta.json named by
``hyper_parameters.feature_meta_path``) input columns
``features:<name>`` (one-hot categoricals, standardised numerics).

The labels a run reads are those of its tasks (``hyper_parameters.tasks``); other label columns
are ignored, and no label is ever part of ``features``.
"""
import json

from models.common.data import CachedDataset, ColumnarCSVParser
from models.common.features import DenseFeature, Schema
from models.common.multitask import parse_tasks, task_labels
from models.common.spec import Param, SpecError, positive_int

LABELS = ("income", "marital")  # income > 50K; never married (the MMoE paper's tasks)
FEATURES = "features"  # the input columns are features:<name>
CONFIG_SPEC = {
    "hyper_parameters.feature_dim": positive_int(required=False, help="number of features:<name> columns (or "
                                                                      "feature_meta_path)"),
    "hyper_parameters.feature_meta_path": Param(str, required=False, help="the meta.json datasets/census/run.sh "
                                                                          "wrote, holding feature_dim"),
}


def feature_dim(config):
    """``hyper_parameters.feature_dim``, or the ``feature_dim`` of the meta.json that
    datasets/census/run.sh wrote (``hyper_parameters.feature_meta_path``); both must agree."""
    dim, meta = config.get("hyper_parameters.feature_dim"), config.get("hyper_parameters.feature_meta_path")
    if meta:
        try:
            with open(meta, encoding="utf-8") as f:
                written = int(json.load(f)["feature_dim"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise FileNotFoundError(f"hyper_parameters.feature_meta_path: cannot read feature_dim from {meta!r} "
                                    f"({error}); run datasets/census/run.sh first") from None
        if dim is not None and dim != written:
            raise SpecError(f"'hyper_parameters.feature_dim' is {dim} but {meta} says {written}")
        return written
    if dim is None:
        raise SpecError("required key 'hyper_parameters.feature_dim' (or feature_meta_path) is missing: the "
                        "number of feature columns datasets/census/run.sh printed")
    return dim


def schema(config):
    labels = task_labels(parse_tasks(config.get("hyper_parameters.tasks")))
    return Schema(labels + [DenseFeature(FEATURES, feature_dim(config))])


def parser(config=None):
    keys = {FEATURES: "hyper_parameters.feature_dim"}
    if config is not None:
        for i, t in enumerate(parse_tasks(config.get("hyper_parameters.tasks"))):
            keys.setdefault(t.label, f"hyper_parameters.tasks[{i}].label")
    return ColumnarCSVParser(keys)


class RecDataset(CachedDataset):
    """The census files, converted once into the columnar cache."""
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)

    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), parser(config))

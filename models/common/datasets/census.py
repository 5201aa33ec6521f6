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
    "hyper_parameters.feature_meta_path": Param(str, required=False, file=True,
                                                help="the meta.json datasets/census/run.sh wrote, holding feature_dim"),
}


def feature_meta(config):
    """The meta.json datasets/census/run.sh wrote (``hyper_parameters.feature_meta_path``), or None."""
    path = config.get("hyper_parameters.feature_meta_path")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        meta["feature_dim"], meta["feature_names"] = int(meta["feature_dim"]), list(meta["feature_names"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FileNotFoundError(f"hyper_parameters.feature_meta_path: cannot read feature_dim and feature_names "
                                f"from {path!r} ({error}); run datasets/census/run.sh first") from None
    if len(meta["feature_names"]) != meta["feature_dim"]:
        raise SpecError(f"hyper_parameters.feature_meta_path: {path} lists {len(meta['feature_names'])} feature names "
                        f"for feature_dim {meta['feature_dim']}")
    return meta


def feature_dim(config):
    """``hyper_parameters.feature_dim``, or the ``feature_dim`` of the meta.json that
    datasets/census/run.sh wrote (``hyper_parameters.feature_meta_path``); both must agree."""
    dim, meta = config.get("hyper_parameters.feature_dim"), feature_meta(config)
    if meta:
        if dim is not None and dim != meta["feature_dim"]:
            raise SpecError(f"'hyper_parameters.feature_dim' is {dim} but "
                            f"{config.get('hyper_parameters.feature_meta_path')} says {meta['feature_dim']}")
        return meta["feature_dim"]
    if dim is None:
        raise SpecError("required key 'hyper_parameters.feature_dim' (or feature_meta_path) is missing: the "
                        "number of feature columns datasets/census/run.sh printed")
    return dim


def schema(config):
    labels = task_labels(parse_tasks(config.get("hyper_parameters.tasks")))
    return Schema(labels + [DenseFeature(FEATURES, feature_dim(config))])


def parser(config=None):
    """The columnar CSV parser; with a meta.json the feature columns are matched by their names
    (in any order; a missing, extra or renamed one is an error naming it)."""
    keys = {FEATURES: "hyper_parameters.feature_dim"}
    meta = feature_meta(config) if config is not None else None
    if config is not None:
        for i, t in enumerate(parse_tasks(config.get("hyper_parameters.tasks"))):
            keys.setdefault(t.label, f"hyper_parameters.tasks[{i}].label")
    names = {FEATURES: meta["feature_names"]} if meta else None
    return ColumnarCSVParser(keys, names, names_from=config.get("hyper_parameters.feature_meta_path") if meta else None)


class RecDataset(CachedDataset):
    """The census files, converted once into the columnar cache."""
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)

    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), parser(config))

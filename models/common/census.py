"""UCI census-income (KDD) as the multi-task models read it: the columnar CSV written by
datasets/census/run.sh - a header row, then one person per row: the label columns (``income``:
income > 50K; ``marital``: never married) and ``hyper_parameters.feature_dim`` input columns
``features:<name>`` (one-hot categoricals, standardised numerics).

The labels a run reads are those of its tasks (``hyper_parameters.tasks``); other label columns
are ignored, and no label is ever part of ``features``.
"""
from models.common.data import ColumnarCSVParser
from models.common.features import DenseFeature, Schema
from models.common.multitask import parse_tasks, task_labels
from models.common.spec import positive_int

FEATURES = "features"
CONFIG_SPEC = {"hyper_parameters.feature_dim": positive_int(required=False)}
REQUIRED = ("hyper_parameters.feature_dim",)


def schema(config):
    labels = task_labels(parse_tasks(config.get("hyper_parameters.tasks")))
    return Schema(labels + [DenseFeature(FEATURES, config.get("hyper_parameters.feature_dim"))])


def parser():
    return ColumnarCSVParser({FEATURES: "hyper_parameters.feature_dim"})

"""Pairs of pretrained vectors: one row per (user, item) pair, ``label,u_1..u_d,i_1..i_d``.

Text files of comma-separated numbers (the reference format, no header) or ``.npy`` shards of
shape [rows, 1 + 2d]; both are converted once into the columnar cache (models.common.data), so
training streams files far larger than memory. d is ``hyper_parameters.vector_dim``.
"""
from models.common.data import CachedDataset, NumberRowsParser
from models.common.features import DenseFeature, Label, Schema
from models.common.spec import positive_int

CONFIG_SPEC = {"hyper_parameters.vector_dim": positive_int(help="width of the pretrained user and item vectors")}


def schema(config):
    dim = config.get("hyper_parameters.vector_dim")
    return Schema([Label("label"), DenseFeature("user_vector", dim), DenseFeature("item_vector", dim)])


class RecDataset(CachedDataset):
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)

    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), NumberRowsParser())

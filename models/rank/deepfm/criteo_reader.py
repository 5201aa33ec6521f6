"""Reader for PaddleRec's Criteo slot format, one sample per line:
``click:<0|1> dense_feature:<x> (13 times) 1:<id> ... 26:<id>``.

The schema: the label ``click``, one 13-wide dense feature ``dense_feature`` and 26 sparse
features ``1`` .. ``26`` sharing one hashed-id table of ``sparse_feature_number`` rows (PaddleRec's
layout). Files are converted once into the columnar cache (models.common.data).
"""
from models.common.data import CachedDataset, SlotParser
from models.common.features import DenseFeature, Label, Schema, SparseFeature

NUM_DENSE = 13
SPARSE = [str(i) for i in range(1, 27)]
SLOTS = ["click"] + ["dense_feature"] * NUM_DENSE + SPARSE


def schema(config):
    vocab = config.get("hyper_parameters.sparse_feature_number")
    dim = config.get("hyper_parameters.sparse_feature_dim")
    return Schema([Label("click"), DenseFeature("dense_feature", NUM_DENSE)]
                  + [SparseFeature(name, vocab, dim, shared_with=None if name == SPARSE[0] else SPARSE[0])
                     for name in SPARSE])


class RecDataset(CachedDataset):
    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), SlotParser(SLOTS))

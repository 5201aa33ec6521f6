"""Criteo (Kaggle display advertising challenge) in PaddleRec's slot format, one sample per line:
``click:<0|1> dense_feature:<x> (13 times) 1:<id> ... 26:<id>`` (datasets/criteo/run.sh writes it).

The schema: the label ``click``, one 13-wide dense feature ``dense_feature`` and 26 sparse
features ``1`` .. ``26`` sharing one hashed-id table of ``hyper_parameters.sparse_feature_number``
rows (PaddleRec's layout), each embedded in ``hyper_parameters.sparse_feature_dim`` columns.
Files are converted once into the columnar cache (models.common.data).
"""
from models.common.data import CachedDataset, SlotParser
from models.common.features import DenseFeature, Label, Schema, SparseFeature
from models.common.spec import positive_int

LABEL = "click"
DENSE = "dense_feature"
NUM_DENSE = 13
NUM_SPARSE = 26
SPARSE = [str(i) for i in range(1, NUM_SPARSE + 1)]
SLOTS = [LABEL] + [DENSE] * NUM_DENSE + SPARSE

CONFIG_SPEC = {
    "hyper_parameters.sparse_feature_number": positive_int(help="rows of the shared hashed-id table (ids < it)"),
    "hyper_parameters.sparse_feature_dim": positive_int(help="embedding size of every sparse feature"),
}


def schema(config):
    vocab = config.get("hyper_parameters.sparse_feature_number")
    dim = config.get("hyper_parameters.sparse_feature_dim")
    return Schema([Label(LABEL), DenseFeature(DENSE, NUM_DENSE)]
                  + [SparseFeature(name, vocab, dim, shared_with=None if name == SPARSE[0] else SPARSE[0])
                     for name in SPARSE])


class RecDataset(CachedDataset):
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)

    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), SlotParser(SLOTS))

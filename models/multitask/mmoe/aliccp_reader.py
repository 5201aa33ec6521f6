"""Reader for Ali-CCP in PaddleRec's format (``sample_id,click,purchase,<field>:<id>,...``;
models/common/aliccp.py): 23 sum-pooled fields sharing one id table, labels click and purchase,
every field:id pair read. Converted once into the columnar cache."""
from models.common import aliccp
from models.common.data import CachedDataset

schema = aliccp.schema
# tools/benchmark.py --baseline: PaddleRec's line-by-line ESMM reader of the same files
PADDLEREC_FORMAT, FIELDS, LABELS = "aliccp", aliccp.FIELDS, aliccp.LABELS


class RecDataset(CachedDataset):
    def __init__(self, file_list, config):
        super().__init__(file_list, config, aliccp.schema(config), aliccp.parser())

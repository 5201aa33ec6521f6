"""Reader for Ali-CCP in PaddleRec's format (``sample_id,click,purchase,<field>:<id>,...``) or our
columnar CSV form: models/common/aliccp.py declares the data set and reads it."""
from models.common.aliccp import FIELDS, LABELS, PADDLEREC_FORMAT, RecDataset, schema  # noqa: F401

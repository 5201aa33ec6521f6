"""Reader of the MovieLens retrieval rows (shared by the recall models; see
models/common/retrieval_data.py): user features, the watch history sharing the item-id table,
the target item."""
from models.common.retrieval_data import RecDataset, schema  # noqa: F401

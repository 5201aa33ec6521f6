"""MetaEmb reads MovieLens in its cold-start splits (models/common/datasets/movielens.py)."""
from models.common.datasets.movielens import ColdStartDataset as RecDataset  # noqa: F401

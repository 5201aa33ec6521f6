"""Reader for census-income (KDD) as datasets/census/run.sh writes it: models/common/census.py
declares the data set and reads it."""
from models.common.census import RecDataset, schema  # noqa: F401

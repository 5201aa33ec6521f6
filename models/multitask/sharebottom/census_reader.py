"""Reader for census-income (KDD) as written by datasets/census/run.sh: columnar CSV, labels of
the configured tasks (income, marital) and ``hyper_parameters.feature_dim`` input columns
``features:...`` (models/common/census.py). Converted once into the columnar cache."""
from models.common import census
from models.common.data import CachedDataset

schema = census.schema


class RecDataset(CachedDataset):
    def __init__(self, file_list, config):
        super().__init__(file_list, config, census.schema(config), census.parser(config))

"""DSSM for the shared runners: point-wise by default (binary cross-entropy on each positive and
its sampled negatives); every mode, similarity, temperature and negative sampler of the shared
matching wrapper (models/common/matching_model.py) is a config key."""
from models.common.matching_model import MatchingDygraphModel
from .net import build_towers


class DygraphModel(MatchingDygraphModel):
    default_mode, default_negatives, default_similarity, default_temperature = "point", "popularity", "cosine", 0.1

    def build_towers(self, embedding, config):
        hp = "hyper_parameters"
        return build_towers(embedding, config.get(f"{hp}.user_fc_sizes"), config.get(f"{hp}.item_fc_sizes"),
                            config.get(f"{hp}.dropout"))

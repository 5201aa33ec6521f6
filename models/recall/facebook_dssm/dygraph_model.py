"""FacebookDSSM for the shared runners: pair-wise hinge (triplet) loss on cosine similarity by
default; every mode, similarity, temperature and sampler of the shared matching wrapper
(models/common/matching_model.py) is a config key."""
from models.common.matching_model import MatchingDygraphModel
from .net import build_towers


class DygraphModel(MatchingDygraphModel):
    default_mode, default_negatives, default_similarity = "pair", "popularity", "cosine"
    default_pair_loss, default_temperature = "hinge", 1.0

    def build_towers(self, embedding, config):
        hp = "hyper_parameters"
        return build_towers(embedding, config.get(f"{hp}.user_fc_sizes"), config.get(f"{hp}.item_fc_sizes"),
                            config.get(f"{hp}.dropout"))

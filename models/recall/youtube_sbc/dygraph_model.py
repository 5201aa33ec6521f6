"""YoutubeSBC for the shared runners: list-wise in-batch softmax with logQ correction by default;
every mode, similarity, temperature and sampler of the shared matching wrapper
(models/common/matching_model.py) is a config key."""
from models.common.matching_model import MatchingDygraphModel
from .net import build_towers


class DygraphModel(MatchingDygraphModel):
    default_mode, default_negatives, default_similarity = "list", "in_batch", "cosine"
    default_temperature, default_logq = 0.05, True

    def build_towers(self, embedding, config):
        hp = "hyper_parameters"
        return build_towers(embedding, config.get(f"{hp}.user_fc_sizes"), config.get(f"{hp}.item_fc_sizes"),
                            config.get(f"{hp}.dropout"))

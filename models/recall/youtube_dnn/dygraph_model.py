"""YoutubeDNN for the shared runners: list-wise sampled softmax by default (20 popularity^0.75
negatives, temperature 0.5; logQ correction is a key, off by default: it scored lower on
ml-100k); every mode, similarity, temperature and sampler of the shared
matching wrapper (models/common/matching_model.py) is a config key. The item side is the
item-id embedding, so user_fc_sizes must end with embed_dim (item_fc_sizes is not used)."""
from models.common.matching_model import MatchingDygraphModel
from models.common.spec import SpecError
from .net import build_towers


class DygraphModel(MatchingDygraphModel):
    config_spec = {**MatchingDygraphModel.defaults(mode="list", negatives="popularity", similarity="cosine",
                                                   temperature=0.5, logq_correction=False, neg_num=20),
                   "hyper_parameters.item_fc_sizes": None}  # no item MLP: the item side is the id embedding

    def check_config(self, config):
        super().check_config(config)
        sizes, dim = config.get("hyper_parameters.user_fc_sizes"), config.get("hyper_parameters.embed_dim")
        if sizes and sizes[-1] != dim:
            raise SpecError(f"'hyper_parameters.user_fc_sizes' must end with embed_dim ({dim}): the item side is "
                            f"the item-id embedding; got {sizes}")

    def build_towers(self, embedding, config):
        return build_towers(embedding, config.get("hyper_parameters.user_fc_sizes"), config.get("hyper_parameters.dropout"))

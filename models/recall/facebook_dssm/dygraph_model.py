"""Facebook's embedding-based retrieval (Huang et al., KDD 2020, "FacebookDSSM" in torch-rechub)
as a two-tower model:

    user = MLP([user_id, gender, age, occupation, zip, mean(history)])
    item = MLP([item_id, mean(genres)])
    score = cos(user, item)

trained pair-wise by default: the triplet hinge loss max(0, margin - (cos(u, i+) - cos(u, i-)))
(BPR as an option). The towers are the shared matching wrapper's default MLP towers
(models/common/matching_model.py); every mode, similarity, temperature and sampler is a config key."""
from models.common.matching_model import MatchingDygraphModel


class DygraphModel(MatchingDygraphModel):
    config_spec = MatchingDygraphModel.defaults(mode="pair", negatives="popularity", similarity="cosine",
                                                pair_loss="hinge", temperature=1.0)

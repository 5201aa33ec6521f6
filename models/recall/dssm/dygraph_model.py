"""DSSM (Huang et al., CIKM 2013) as a two-tower retrieval model (torch-rechub's DSSM):

    user = MLP([user_id, gender, age, occupation, zip, mean(history)])
    item = MLP([item_id, mean(genres)])
    score = cos(user, item) / temperature      (similarity: cosine | dot)

The towers are the shared matching wrapper's default MLP towers (models/common/matching_model.py;
the history shares the item-id table), trained point-wise by default: binary cross-entropy on each
positive and its sampled negatives. Every mode, similarity, temperature and negative sampler of the
wrapper is a config key."""
from models.common.matching_model import MatchingDygraphModel


class DygraphModel(MatchingDygraphModel):
    config_spec = MatchingDygraphModel.defaults(mode="point", negatives="popularity", similarity="cosine",
                                                temperature=0.1)

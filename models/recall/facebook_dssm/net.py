"""Facebook's embedding-based retrieval (Huang et al., KDD 2020, "FacebookDSSM" in torch-rechub)
as a two-tower model:

    user = MLP([user_id, gender, age, occupation, zip, mean(history)])
    item = MLP([item_id, mean(genres)])
    score = cos(user, item)

trained pair-wise: the triplet hinge loss max(0, margin - (cos(u, i+) - cos(u, i-))) (BPR as an
option). The towers, modes and losses are the shared matching wrapper's (models/common/matching.py).
"""
from models.common.matching import MLPTower
from models.common.datasets.movielens import USER_FEATURES


def build_towers(embedding, user_fc_sizes, item_fc_sizes, dropout=0.0):
    user = MLPTower(embedding, list(USER_FEATURES) + ["hist"], user_fc_sizes, dropout)
    item = MLPTower(embedding, ["item_id", "genre"], item_fc_sizes, dropout)
    return user, item

"""DSSM (Huang et al., CIKM 2013) as a two-tower retrieval model (torch-rechub's DSSM):

    user = MLP([user_id, gender, age, occupation, zip, mean(history)])
    item = MLP([item_id, mean(genres)])
    score = cos(user, item) / temperature      (similarity: cosine | dot)

The history shares the item-id table; the towers, similarity, modes and losses are the shared
matching wrapper's (models/common/matching.py).
"""
from models.common.matching import MLPTower
from models.common.datasets.movielens import USER_FEATURES


def build_towers(embedding, user_fc_sizes, item_fc_sizes, dropout=0.0):
    user = MLPTower(embedding, list(USER_FEATURES) + ["hist"], user_fc_sizes, dropout)
    item = MLPTower(embedding, ["item_id", "genre"], item_fc_sizes, dropout)
    return user, item

"""YoutubeDNN candidate generation (Covington et al., RecSys 2016) as a two-tower model:

    user = MLP([user_id, gender, age, occupation, zip, mean(history)])   (last size = embed_dim)
    item = the item-id embedding (the softmax's output weights), shared with the history
    score = sim(user, item) / temperature

trained list-wise: a softmax over the positive and sampled negatives (sampled softmax). The towers,
modes and losses are the shared matching wrapper's (models/common/matching.py).
"""
from models.common.matching import IdTower, MLPTower
from models.common.datasets.movielens import USER_FEATURES


def build_towers(embedding, user_fc_sizes, dropout=0.0):
    return MLPTower(embedding, list(USER_FEATURES) + ["hist"], user_fc_sizes, dropout), IdTower(embedding, "item_id")

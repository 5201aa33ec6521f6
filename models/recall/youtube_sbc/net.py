"""YoutubeSBC (Yi et al., RecSys 2019: sampling-bias-corrected neural modeling) as a two-tower
model:

    user = MLP([user_id, gender, age, occupation, zip, mean(history)])
    item = MLP([item_id, mean(genres)])
    logit(u, i) = cos(user, item) / temperature - log q(i)

trained with an in-batch softmax: the other rows' positives are the negatives, and q(i), the
probability that item i is in a batch, corrects their popularity bias. The towers, modes and
losses are the shared matching wrapper's (models/common/matching.py).
"""
from models.common.matching import MLPTower
from models.common.datasets.movielens import USER_FEATURES


def build_towers(embedding, user_fc_sizes, item_fc_sizes, dropout=0.0):
    user = MLPTower(embedding, list(USER_FEATURES) + ["hist"], user_fc_sizes, dropout)
    item = MLPTower(embedding, ["item_id", "genre"], item_fc_sizes, dropout)
    return user, item

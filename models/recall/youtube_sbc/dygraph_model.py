"""YoutubeSBC (Yi et al., RecSys 2019: sampling-bias-corrected neural modeling) as a two-tower
model:

    user = MLP([user_id, gender, age, occupation, zip, mean(history)])
    item = MLP([item_id, mean(genres)])
    logit(u, i) = cos(user, item) / temperature - log q(i)

trained by default with an in-batch softmax: the other rows' positives are the negatives, and q(i),
the probability that item i is in a batch, corrects their popularity bias. The towers are the shared
matching wrapper's default MLP towers (models/common/matching_model.py); every mode, similarity,
temperature and sampler is a config key."""
from models.common.matching_model import MatchingDygraphModel


class DygraphModel(MatchingDygraphModel):
    config_spec = MatchingDygraphModel.defaults(mode="list", negatives="in_batch", similarity="cosine",
                                                temperature=0.05, logq_correction=True)

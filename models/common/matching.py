"""Two-tower matching: towers, similarity, training modes and losses, shared by every retrieval
model (models/recall/*). A model folder only builds its user and item towers.

Scores. ``similarity: cosine`` L2-normalises both towers' outputs, ``dot`` keeps them raw; the
logit of (user u, item i) is ``sim(u, i) / temperature`` in every mode. With ``logq_correction``
the log of each candidate's sampling probability is subtracted from its logit (Yi et al., RecSys
2019: sampling-bias-corrected in-batch softmax).

Candidates per row: the positive item and negatives, either ``neg_num`` ids drawn by a
models.common.sampling sampler (uniform, popularity, log_popularity) or, with ``in_batch``, every
row's positive ([B, B] scores; the row's own column, and any other holding the same item, is
masked out: it is not a negative).

Modes, on logits pos [B] and neg [B, K] (mask [B, K]: which negatives count):
    point  binary cross-entropy, the positive labelled 1, each negative 0: averaged over all
           labelled pairs, or (``point_balance``) the positives' mean plus the negatives' mean -
           without it, many negatives (in-batch: B - 1) drown the positives and, drawn by
           popularity, push popular items down
    pair   BPR  mean -log sigmoid(pos - neg)   or   hinge  mean max(0, margin - (pos - neg))
    list   softmax cross-entropy over [pos, neg_1 .. neg_K], the positive as target
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.layers import MLP, l2_normalize

MODES = ("point", "pair", "list")
PAIR_LOSSES = ("bpr", "hinge")
SIMILARITIES = ("cosine", "dot")
NEGATIVES = ("uniform", "popularity", "log_popularity", "in_batch")


def _masked_mean(values, mask):
    if mask is None:
        return values.mean()
    mask = mask.astype(values.dtype)
    return (values * mask).sum() / paddle.clip(mask.sum(), min=1.0)


def matching_loss(pos, neg, mode, mask=None, pair_loss="bpr", margin=0.1, balance=False):
    """The loss of one batch: ``pos`` [B] and ``neg`` [B, K] logits (temperature and logQ already
    applied); ``mask`` [B, K] bool (None: every negative counts); ``balance`` (point mode): mean
    positive term + mean negative term instead of one mean over all labelled pairs."""
    if mode == "point":
        positive = F.softplus(-pos)  # -log sigmoid(pos)
        negative = F.softplus(neg)  # -log (1 - sigmoid(neg))
        if balance:  # each class averaged on its own: K negatives do not drown the positive
            return positive.mean() + _masked_mean(negative, mask)
        count = pos.shape[0] + (neg.size if mask is None else mask.astype(neg.dtype).sum())
        negative_sum = negative.sum() if mask is None else (negative * mask.astype(neg.dtype)).sum()
        return (positive.sum() + negative_sum) / count
    if mode == "pair":
        diff = pos.unsqueeze(1) - neg
        if pair_loss == "bpr":
            return _masked_mean(F.softplus(-diff), mask)
        if pair_loss == "hinge":
            return _masked_mean(F.relu(margin - diff), mask)
        raise ValueError(f"unknown pair_loss {pair_loss!r}; expected one of {', '.join(PAIR_LOSSES)}")
    if mode == "list":
        if mask is not None:
            neg = paddle.where(mask, neg, paddle.full_like(neg, -1e9))
        logits = paddle.concat([pos.unsqueeze(1), neg], axis=1)
        return (paddle.logsumexp(logits, axis=1) - pos).mean()
    raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")


class MLPTower(nn.Layer):
    """Embeds the named features (models.common.embedding.FeatureEmbedding.embed), concatenates
    them and applies an MLP whose last layer is linear: the tower's output vector."""

    def __init__(self, embedding, names, dims, dropout=0.0):
        super().__init__()
        self.embedding, self.names = embedding, list(names)
        self.mlp = MLP(len(self.names) * embedding.dim, dims, activation="relu", dropout=dropout,
                       last_activation=False)
        self.output_dim = self.mlp.output_dim

    def forward(self, batch):
        return self.mlp(self.embedding.embed(batch, self.names).flatten(start_axis=1))


class IdTower(nn.Layer):
    """The item-id embedding itself (YoutubeDNN's item side: the softmax weights)."""

    def __init__(self, embedding, name="item_id"):
        super().__init__()
        self.embedding, self.name = embedding, name
        self.output_dim = embedding.dim

    def forward(self, batch):
        return self.embedding.embed(batch, [self.name]).squeeze(1)


class TwoTower(nn.Layer):
    """User and item towers over one FeatureEmbedding (the watch history shares the item-id
    table). ``item_features(ids)`` -> the item tower's batch for any item ids (the catalog's
    side features, e.g. genres, are buffers indexed by id), so sampled negatives and the whole
    catalog go through the same tower as positives."""

    def __init__(self, embedding, user_tower, item_tower, item_features, similarity="cosine"):
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; expected one of {', '.join(SIMILARITIES)}")
        if user_tower.output_dim != item_tower.output_dim:
            raise ValueError(f"the user tower's output ({user_tower.output_dim}) and the item tower's "
                             f"({item_tower.output_dim}) must have the same size")
        self.embedding, self.user_tower, self.item_tower = embedding, user_tower, item_tower
        self.item_features = item_features
        self.similarity = similarity

    def _out(self, x):
        return l2_normalize(x) if self.similarity == "cosine" else x

    def user_embedding(self, batch):
        return self._out(self.user_tower(batch))

    def item_embedding(self, item_ids):
        """[*shape, d] vectors of the ids [*shape]."""
        shape = list(item_ids.shape)
        flat = item_ids.reshape([-1])
        return self._out(self.item_tower(self.item_features(flat))).reshape(shape + [-1])

    def item_vectors(self, batch):
        """[B, d] vectors of the items ``batch["item_id"]`` (the exported item tower)."""
        return self.item_embedding(batch["item_id"])

    def forward(self, batch):
        """Similarity of each row's user and its item ``item_id`` [B] (no temperature)."""
        return (self.user_embedding(batch) * self.item_embedding(batch["item_id"])).sum(axis=-1)


def candidate_logits(model, batch, sampler, hp, log_q=None):
    """-> (pos [B], neg [B, K], mask [B, K] or None) for one training batch.

    ``hp``: negatives, neg_num, temperature, logq_correction. ``log_q`` [num_ids]: log sampling
    probability of each id (the sampler's, or the unigram one for in-batch negatives)."""
    users = model.user_embedding(batch)  # [B, d]
    positives = batch["item_id"]
    pos_vec = model.item_embedding(positives)  # [B, d]
    pos = (users * pos_vec).sum(axis=-1)
    if hp["negatives"] == "in_batch":
        # Row i against every row's positive: [B, B]. The diagonal (and any other column holding
        # row i's own item) is masked below as "equal to the positive", so it is not a negative.
        neg = paddle.matmul(users, pos_vec, transpose_y=True)
        neg_ids = paddle.expand(positives.reshape([1, -1]), [positives.shape[0], positives.shape[0]])
    else:
        neg_ids = sampler.sample([positives.shape[0], hp["neg_num"]])
        neg_vec = model.item_embedding(neg_ids)  # [B, K, d]
        neg = paddle.matmul(neg_vec, users.unsqueeze(-1)).squeeze(-1)  # [B, K]
    mask = neg_ids != positives.reshape([-1, 1])  # a negative equal to the positive is not one
    pos, neg = pos / hp["temperature"], neg / hp["temperature"]
    if hp.get("logq_correction") and log_q is not None:
        pos = pos - paddle.gather(log_q, positives)
        neg = neg - paddle.gather(log_q, neg_ids.reshape([-1])).reshape(neg_ids.shape)
    return pos, neg, mask

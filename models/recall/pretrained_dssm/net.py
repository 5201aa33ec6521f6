"""Two towers over pretrained user and item vectors, fine-tuned on a small scenario's clicks.

    u = user_tower(user_vector), i = item_tower(item_vector)        (MLPs, Dense(64, relu) by default)
    score = sigmoid(w . (u * i) + b)      "product": the reference design (element-wise product, Dense(1))
          = sigmoid(u . i / T)            "dot"
          = sigmoid(cos(u, i) / T)        "cosine"

Every score is a monotone function of an inner product <query(u), key(i)>, so the item side can
be indexed once and users matched by maximum-inner-product search: ``query`` and ``key`` give
those vectors (product: w * u and i; dot: u and i; cosine: both L2-normalised).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.layers import MLP, l2_normalize

SCORES = ("product", "dot", "cosine")


class PretrainedTwoTower(nn.Layer):
    def __init__(self, vector_dim, tower_dims, score="product", temperature=1.0):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score {score!r} unknown; expected one of {SCORES}")
        self.score, self.temperature = score, temperature
        self.user_tower = MLP(vector_dim, tower_dims, "relu")
        self.item_tower = MLP(vector_dim, tower_dims, "relu")
        if score == "product":
            self.output = nn.Linear(tower_dims[-1], 1)

    def query(self, user):
        """Tower output of users -> the vector whose inner product with ``key(item)`` ranks items."""
        if self.score == "product":
            return user * self.output.weight.reshape([-1])
        if self.score == "cosine":
            user = l2_normalize(user)
        return user / self.temperature

    def key(self, item):
        return l2_normalize(item) if self.score == "cosine" else item

    def logit_of(self, inner_product):
        """The score's logit from <query, key> (adds the output bias for "product")."""
        return inner_product + self.output.bias if self.score == "product" else inner_product

    def user_query(self, batch):
        return self.query(self.user_tower(batch["user_vector"]))

    def item_key(self, batch):
        return self.key(self.item_tower(batch["item_vector"]))

    def forward(self, batch):
        user, item = self.user_tower(batch["user_vector"]), self.item_tower(batch["item_vector"])
        logit = self.logit_of(paddle.sum(self.query(user) * self.key(item), axis=-1))
        return F.sigmoid(logit)

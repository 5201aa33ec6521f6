"""MetaEmb (Pan et al., SIGIR 2019): a DeepFM base whose item-ID embedding can be replaced by a
given one, and the ID-embedding generator.

Base: every feature embedded by one FeatureEmbedding (title and genres mean-pooled), fields in the
order [ID, item features, context features], DeepFM's FM second order + DNN on them (no first-order
term, as the official code's deepFM: an ID's only parameters are its embedding row).

Generator: the item's other features' embeddings (from the base model, frozen) -> one dense layer
without bias, tanh, divided by ``scale`` (the official code: Dense(emb_size, tanh, use_bias=False)
then / 5).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import FeatureEmbedding
from models.common.features import SparseFeature
from models.common.layers import DeepFMHead


class MetaEmbDeepFM(nn.Layer):
    def __init__(self, schema, id_name, item_features, context_features, layer_sizes, init_std=0.01):
        super().__init__()
        self.id_name = id_name
        self.item_features, self.context_features = list(item_features), list(context_features)
        self.embedding = FeatureEmbedding(schema.of_kind(SparseFeature), init=("normal", init_std))
        self.dim = self.embedding.dim
        num_fields = 1 + len(self.item_features) + len(self.context_features)
        self.head = DeepFMHead(num_fields, self.dim, layer_sizes)

    def item_fields(self, batch):
        """[B, item features * dim]: the generator's input, with no gradient into the base."""
        fields = self.embedding(batch)
        return self.embedding.select(fields, self.item_features).flatten(start_axis=1).detach()

    def forward(self, batch, id_emb=None):
        """Click probability [B, 1]; ``id_emb`` [B, dim] replaces the ID's embedding row."""
        fields = self.embedding.select(self.embedding(batch), [self.id_name] + self.item_features
                                       + self.context_features)
        if id_emb is not None:
            # Slot 0 swapped by a mask, not a concat: paddle's concat has no usable double grad
            # next to inputs without gradient, and the meta-step differentiates twice through here.
            mask = paddle.zeros([1, fields.shape[1], 1], fields.dtype)
            mask[0, 0, 0] = 1.0
            fields = fields.detach() * (1.0 - mask) + id_emb.unsqueeze(1) * mask
        return F.sigmoid(self.head(fields))

class EmbeddingGenerator(nn.Layer):
    """Item features [B, in_dim] -> ID embedding [B, dim] = tanh(x W) / scale (W Glorot-uniform,
    TF's Dense default as in the official code)."""

    def __init__(self, in_dim, dim, scale=5.0):
        super().__init__()
        self.scale = scale
        self.weight = self.create_parameter([in_dim, dim], default_initializer=nn.initializer.XavierUniform())

    def forward(self, item_fields):
        return paddle.tanh(paddle.matmul(item_fields, self.weight)) / self.scale

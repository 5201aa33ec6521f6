"""DeepFM (Guo et al., IJCAI 2017): an FM component and a DNN sharing one embedding table.

    y = sigmoid(bias + first_order + fm_second_order(E) + DNN(concat(E)))

E holds one embedding per field: every sparse feature of the schema (PaddleRec's Criteo: 26
fields sharing one hashed-id table) and every dense value (13), each a learned vector scaled by
the field's value (as in PaddleRec's DeepFM).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import DenseEmbedding, FeatureEmbedding
from models.common.features import DenseFeature, SparseFeature
from models.common.layers import MLP, FMInteraction, split_views


class DeepFMLayer(nn.Layer):
    def __init__(self, schema, layer_sizes, sparse=False, init_value=0.1):
        super().__init__()
        sparse_features = schema.of_kind(SparseFeature)
        self.dense_names = [f.name for f in schema.of_kind(DenseFeature)]
        num_dense = sum(schema[n].dim for n in self.dense_names)
        self.dim = dim = sparse_features[0].embed_dim
        std = init_value / math.sqrt(dim)
        # Column 0 of a sparse id's row is its first-order weight w, columns 1.. its embedding v:
        # one lookup and one (lazy) Adam update per id instead of two tables (same parameters and
        # initialisation as PaddleRec's two tables: truncated normal, std 0.1 / sqrt(dim)).
        self.embedding = FeatureEmbedding(sparse_features, dim=1 + dim, sparse=sparse, init=("truncated_normal", std))
        # Dense fields: a first-order weight and an embedding per field. PaddleRec starts them all
        # at 1.0, which saturates the initial sigmoid (the dense fields' pairwise FM terms alone
        # reach ~100); they start like the sparse rows here.
        self.dense_weight = DenseEmbedding(num_dense, 1, init_std=std)
        self.dense_embedding = DenseEmbedding(num_dense, dim, init_std=std)
        self.bias = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))
        num_fields = len(sparse_features) + num_dense
        self.dnn = MLP(num_fields * dim, layer_sizes, activation="relu")
        self.dnn_out = MLP(self.dnn.output_dim, [1], last_activation=False)

    def forward(self, batch):
        weights, vectors = split_views(self.embedding(batch), [1, self.dim])  # [batch, sparse fields, 1 | dim]
        dense = [batch[n].reshape([batch[n].shape[0], -1]) for n in self.dense_names]
        dense = dense[0] if len(dense) == 1 else paddle.concat(dense, axis=1)  # [batch, dense fields]
        first = FMInteraction.first_order(paddle.concat(
            [weights, self.dense_weight(dense)], axis=1)) + self.bias
        embeddings = paddle.concat([vectors, self.dense_embedding(dense)], axis=1)
        second = FMInteraction.second_order(embeddings)
        deep = self.dnn_out(self.dnn(embeddings.flatten(start_axis=1)))
        return F.sigmoid(first + second + deep)

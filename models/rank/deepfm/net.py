"""DeepFM (Guo et al., IJCAI 2017): an FM component and a DNN sharing one embedding table.

    y = sigmoid(bias + first_order + fm_second_order(E) + DNN(concat(E)))

E holds one embedding per field: 26 sparse fields looked up in a shared hashed-id table and 13
dense fields, each a learned vector scaled by the field's value (as in PaddleRec's DeepFM).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import DenseEmbedding, SparseEmbedding
from models.common.layers import MLP, FMInteraction


class DeepFMLayer(nn.Layer):
    def __init__(self, sparse_feature_number, sparse_feature_dim, dense_feature_dim, sparse_num_field,
                 layer_sizes, sparse=False, init_value=0.1):
        super().__init__()
        std = init_value / math.sqrt(sparse_feature_dim)
        # Column 0 of a sparse id's row is its first-order weight w, columns 1.. its embedding v:
        # one lookup and one (lazy) Adam update per id instead of two tables (same parameters and
        # initialisation as PaddleRec's two tables: truncated normal, std 0.1 / sqrt(dim)).
        self.sparse_table = SparseEmbedding(sparse_feature_number, 1 + sparse_feature_dim, sparse=sparse,
                                            init_std=std, truncated=True)
        # Dense fields: a first-order weight and an embedding per field. PaddleRec starts them all
        # at 1.0, which saturates the initial sigmoid (the dense fields' pairwise FM terms alone
        # reach ~100); they start like the sparse rows here.
        self.dense_weight = DenseEmbedding(dense_feature_dim, 1, init_std=std)
        self.dense_embedding = DenseEmbedding(dense_feature_dim, sparse_feature_dim, init_std=std)
        self.bias = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))
        num_fields = sparse_num_field + dense_feature_dim
        self.dnn = MLP(num_fields * sparse_feature_dim, layer_sizes, activation="relu")
        self.dnn_out = MLP(self.dnn.output_dim, [1], last_activation=False)

    def forward(self, sparse_ids, dense_values):
        rows = self.sparse_table(sparse_ids)  # [batch, 26, 1 + dim]
        first = FMInteraction.first_order(paddle.concat(
            [rows[:, :, :1], self.dense_weight(dense_values)], axis=1)) + self.bias
        embeddings = paddle.concat([rows[:, :, 1:], self.dense_embedding(dense_values)], axis=1)
        second = FMInteraction.second_order(embeddings)
        deep = self.dnn_out(self.dnn(embeddings.flatten(start_axis=1)))
        return F.sigmoid(first + second + deep)

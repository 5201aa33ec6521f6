"""DeepFM (Guo et al., IJCAI 2017): an FM component and a DNN sharing one embedding table.

    y = sigmoid(bias + first_order + fm_second_order(E) + DNN(concat(E)))

E holds one embedding per field: 26 sparse fields looked up in a shared hashed-id table and 13
dense fields, each a learned vector scaled by the field's value (as in PaddleRec's DeepFM).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import DenseEmbedding, SparseEmbedding
from models.common.layers import MLP, FMInteraction


class DeepFMLayer(nn.Layer):
    def __init__(self, sparse_feature_number, sparse_feature_dim, dense_feature_dim, sparse_num_field,
                 layer_sizes, sparse=False, init_value=0.1):
        super().__init__()
        std = init_value / sparse_feature_dim ** 0.5
        # First order: a scalar weight per sparse id and per dense field.
        self.sparse_weight = SparseEmbedding(sparse_feature_number, 1, sparse=sparse, init_std=init_value)
        self.dense_weight = DenseEmbedding(dense_feature_dim, 1, init_std=init_value)
        self.bias = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))
        # Second order and DNN share these embeddings.
        self.sparse_embedding = SparseEmbedding(sparse_feature_number, sparse_feature_dim, sparse=sparse, init_std=std)
        self.dense_embedding = DenseEmbedding(dense_feature_dim, sparse_feature_dim, init_std=std)
        num_fields = sparse_num_field + dense_feature_dim
        self.dnn = MLP(num_fields * sparse_feature_dim, layer_sizes, activation="relu")
        self.dnn_out = MLP(self.dnn.output_dim, [1], last_activation=False)

    def forward(self, sparse_ids, dense_values):
        first = FMInteraction.first_order(paddle.concat(
            [self.sparse_weight(sparse_ids), self.dense_weight(dense_values)], axis=1)) + self.bias
        embeddings = paddle.concat([self.sparse_embedding(sparse_ids), self.dense_embedding(dense_values)], axis=1)
        second = FMInteraction.second_order(embeddings)
        deep = self.dnn_out(self.dnn(embeddings.flatten(start_axis=1)))
        return F.sigmoid(first + second + deep)

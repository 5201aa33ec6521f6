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
        self.num_dense = num_dense = sum(schema[n].dim for n in self.dense_names)
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
        rows = self.embedding(batch)  # [batch, sparse fields, 1 + dim]: each id's w | v
        dense = [batch[n].reshape([batch[n].shape[0], -1]) for n in self.dense_names]
        dense = dense[0] if len(dense) == 1 else paddle.concat(dense, axis=1)  # [batch, dense fields]
        # The sparse fields' sums over the fields are taken over the whole rows: column 0 sums the
        # first-order weights, the others the FM's sums (cheaper than the same sums over strided views).
        summed, squares = FMInteraction.field_sums(rows)
        weight_sum, vector_sum = split_views(summed, [1, self.dim])
        vector_squares = split_views(squares, [1, self.dim])[1]
        # A dense field's terms are linear in its value x_d: w_d x_d in the first order, x_d v_d in
        # the FM, and x_d (v_d @ W_d) in the DNN's first layer (W_d: its rows of the layer's weight).
        # So each is a product of the values with a small matrix: the [batch, dense fields, dim]
        # embeddings are never built nor joined to the sparse ones, and the first layer multiplies
        # 13 dense inputs instead of 13 x 16 (Criteo). The same sums as over concat(E), in another order.
        dense_vectors = self.dense_embedding.vectors  # [dense fields, dim]
        first = weight_sum + paddle.matmul(dense, self.dense_weight.vectors) + self.bias
        second = FMInteraction.pairwise(vector_sum + paddle.matmul(dense, dense_vectors),
                                        vector_squares + paddle.matmul(dense * dense, dense_vectors * dense_vectors))
        vectors = split_views(rows, [1, self.dim])[1]
        sparse_rows, dense_rows = split_views(self.dnn.linears[0].weight,
                                              [vectors.shape[1] * self.dim, self.num_dense * self.dim], axis=0)
        folded = paddle.matmul(dense_vectors.unsqueeze(1), dense_rows.reshape([self.num_dense, self.dim, -1]))  # [D, 1, out]
        projected = paddle.matmul(vectors.flatten(start_axis=1), sparse_rows) + paddle.matmul(dense, folded.squeeze(1))
        deep = self.dnn_out(self.dnn(projected, projected=True))
        return F.sigmoid(first + second + deep)

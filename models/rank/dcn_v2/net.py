"""DCN-v2 (Wang et al., WWW 2021, "DCN V2: Improved Deep & Cross Network"):

    x0     = [embeddings of the sparse fields; the dense values]          (models.common.embedding.FlatFeatures)
    cross  = CrossNetV2(x0): x_{l+1} = x0 * (x_l W_l + b_l) + x_l          (models.common.layers)
    stacked:   out = DNN(cross)
    parallel:  out = [cross; DNN(x0)]
    p      = sigmoid(w . out + b)

Embeddings start at N(0, 1e-4), as FuxiCTR's and torch-rechub's DCN-v2 (the paper does not say);
W_l He-normal and b_l zero, as the paper; the DNN and the output layer as DeepFM's (models.common.layers.MLP).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import FlatFeatures
from models.common.layers import MLP, CrossNetV2

STRUCTURES = ("parallel", "stacked")


class DCNv2Layer(nn.Layer):
    def __init__(self, schema, cross_layers, dnn_sizes, structure="parallel", sparse=False):
        super().__init__()
        if structure not in STRUCTURES:
            raise ValueError(f"DCN-v2 structure {structure!r} unknown; expected one of {STRUCTURES}")
        self.structure = structure
        self.inputs = FlatFeatures(schema, sparse=sparse, init=("normal", 1e-4))
        self.cross = CrossNetV2(self.inputs.output_dim, cross_layers)
        self.dnn = MLP(self.inputs.output_dim, dnn_sizes, activation="relu")
        final = self.dnn.output_dim + (self.cross.output_dim if structure == "parallel" else 0)
        self.logit = MLP(final, [1], last_activation=False)

    def forward(self, batch):
        x0 = self.inputs(batch)
        cross = self.cross(x0)
        out = self.dnn(cross) if self.structure == "stacked" else paddle.concat([cross, self.dnn(x0)], axis=1)
        return F.sigmoid(self.logit(out))

"""MMoE (Ma et al., KDD 2018): Multi-gate Mixture-of-Experts.

    x        = input features (dense columns as they are; sparse/sequence fields embedded, pooled
               and flattened - models.common.embedding.FlatFeatures)
    f_k(x)   = sum_i softmax(W_k x)_i * expert_i(x)       one softmax gate per task k
    y_k      = tower_k(f_k(x))   (sigmoid for a binary task, none for a regression task)

Experts are ReLU MLPs (``expert_sizes``), computed together (models.common.layers.ExpertBank);
towers are ReLU MLPs (``tower_sizes``) ending in one output. All layers start from PyTorch's
default initialisation (PaddleRec's MMoE starts every expert at the same constant, so the experts
could never differ; see readme).
"""
import paddle.nn as nn

from models.common.embedding import FlatFeatures
from models.common.multitask import MixtureOfExperts, Towers


class MMoELayer(nn.Layer):
    def __init__(self, schema, tasks, num_expert, expert_sizes, tower_sizes, sparse=False):
        super().__init__()
        self.inputs = FlatFeatures(schema, sparse=sparse)
        self.mixture = MixtureOfExperts(num_expert, len(tasks), self.inputs.output_dim, expert_sizes)
        self.towers = Towers(tasks, self.mixture.output_dim, tower_sizes)

    def forward(self, batch):
        return self.towers(self.mixture(self.inputs(batch)))

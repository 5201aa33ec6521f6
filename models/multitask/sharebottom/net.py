"""Shared-Bottom multi-task model (Caruana 1997; the baseline of the MMoE and ESMM papers):

    h    = bottom(x)              one ReLU MLP shared by every task (``bottom_sizes``)
    y_k  = tower_k(h)             one ReLU MLP per task ending in one output (sigmoid if binary)

The same input layer, towers and task configuration as MMoE (models.common.multitask), so the
two differ only in the shared part.
"""
import paddle.nn as nn

from models.common.layers import MLP
from models.common.embedding import FlatFeatures
from models.common.multitask import Towers


class ShareBottomLayer(nn.Layer):
    def __init__(self, schema, tasks, bottom_sizes, tower_sizes, sparse=False):
        super().__init__()
        self.inputs = FlatFeatures(schema, sparse=sparse)
        self.bottom = MLP(self.inputs.output_dim, bottom_sizes, activation="relu", init="torch")
        self.towers = Towers(tasks, self.bottom.output_dim, tower_sizes)

    def forward(self, batch):
        return self.towers(self.bottom(self.inputs(batch)))

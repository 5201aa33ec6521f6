"""MetaHeac (Zhu et al., KDD 2021, "Learning to Expand Audience via Meta Hybrid Experts and
Critics"): the network.

    user = [7 static field embeddings, 7 multi-hot fields mean-pooled]          [B, 14, d]
    task = [mean of the user fields, 6 ad field embeddings]                        [B, 7, d]
    fea  = sum_k softmax(expert_gate(task))_k * expert_k(user)                    hybrid experts
    pred = sum_j softmax(critic_gate(task))_j * sigmoid(critic_j(fea))             critics

All fields share one table (models.common.embedding.FeatureEmbedding: field f owns rows
[offset_f, offset_f + vocab_f)); PaddleRec keeps one table per field: the same parameters, but 20
lookups instead of one.

``forward(batch, params=None, ids=None)``: ``batch`` is a dict of the schema's columns.
``params`` maps parameter names to fast weights; when it holds the table (``TABLE``) that tensor
is a row subset (see models.common.meta) and ``ids`` ([B, W], positions in that subset of the
rows ``embedding.global_ids(batch)``) say which rows each column uses.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import FeatureEmbedding
from models.common.layers import MLP, sub_params
from models.common.meta import lookup, softmax

TABLE = "embedding.table.weight"  # the shared table's name in named_parameters()

# Initialisation (hyper_parameters.init) -> (FeatureEmbedding init, MLP init):
#   official:  the official PyTorch code's (torch defaults): every table row N(0, 1); every Linear's
#              weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
#   paddlerec: this repo's former init: each table Xavier-uniform with its own shape (PaddleRec's
#              nn.Embedding default; bound sqrt(6 / (rows + dim)), ~0.005 for kw1); Linear weights
#              N(0, 1/sqrt(fan_in)), zero bias (models.common.layers.MLP's default).
# On the same data the official init learns clearly more (readme.md, "Accuracy").
INITS = {"official": (("normal", 1.0), "torch"), "paddlerec": ("xavier_uniform", "normal")}


class MetaHeacLayer(nn.Layer):
    def __init__(self, schema, user_fields, ad_fields, mlp_dims, num_expert, num_output, dropout=0.0, sparse=True,
                 init="official"):
        """``user_fields`` / ``ad_fields``: names of the schema's features forming the user and
        the ad (task) side; ``sparse``: row-sparse gradients for the table in the ordinary forward
        pass (False only for the dense baseline); ``init``: see INITS."""
        super().__init__()
        if init not in INITS:
            raise ValueError(f"MetaHeac init {init!r} unknown; expected one of {sorted(INITS)}")
        table_init, linear_init = INITS[init]
        self.user_fields, self.ad_fields = list(user_fields), list(ad_fields)
        features = [schema[name] for name in self.user_fields + self.ad_fields]
        self.embedding = FeatureEmbedding(features, sparse=sparse, init=table_init)
        embed_dim = self.embedding.dim
        self.user_dim = len(self.user_fields) * embed_dim
        self.task_dim = (1 + len(self.ad_fields)) * embed_dim
        hidden = mlp_dims[-1]
        # Every layer of mlp_dims is used (PaddleRec builds the second one but never applies it).
        self.experts = nn.LayerList([MLP(self.user_dim, mlp_dims, "relu", dropout, init=linear_init)
                                     for _ in range(num_expert)])
        self.expert_gate = MLP(self.task_dim, [hidden, num_expert], "relu", last_activation=False, init=linear_init)
        # num_output critics, each a Linear(hidden, 1) + sigmoid: one Linear computes all of them
        # (with init "official" its weight and bias bounds 1/sqrt(hidden) are those of each torch Linear).
        self.critics = MLP(hidden, [num_output], last_activation=False, init=linear_init)
        self.critic_gate = MLP(self.task_dim, [hidden, num_output], "relu", last_activation=False, init=linear_init)

    def global_ids(self, batch):
        """Rows of the shared table the batch uses: [B, W]."""
        return self.embedding.global_ids(batch)

    def forward(self, batch, params=None, ids=None):
        table = params.get(TABLE) if params is not None else None
        if ids is None:
            ids = self.embedding.global_ids(batch)
        emb = self.embedding.lookup(ids) if table is None else lookup(table, ids)
        fields = self.embedding.pool(emb, batch)
        user = self.embedding.select(fields, self.user_fields)  # [B, 14, d]
        ad = self.embedding.select(fields, self.ad_fields)  # [B, 6, d]
        batch_size = user.shape[0]
        task = paddle.concat([user.mean(axis=1, keepdim=True), ad], axis=1).reshape([batch_size, -1])

        user_flat = user.reshape([batch_size, -1])
        gate = softmax(self.expert_gate(task, sub_params(params, "expert_gate")), axis=1)  # [B, K]
        outputs = paddle.stack([expert(user_flat, sub_params(params, f"experts.{k}"))
                                for k, expert in enumerate(self.experts)], axis=1)  # [B, K, h]
        fea = paddle.sum(gate.unsqueeze(-1) * outputs, axis=1)
        critic_gate = softmax(self.critic_gate(task, sub_params(params, "critic_gate")), axis=1)
        scores = F.sigmoid(self.critics(fea, sub_params(params, "critics")))  # [B, J]
        return paddle.sum(critic_gate * scores, axis=1)

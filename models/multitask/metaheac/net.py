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
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import FeatureEmbedding
from models.common.layers import MLP, ExpertBank, sub_params
from models.common.meta import lookup, softmax
from models.common.meta_model import TABLE


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
        # The num_expert MLPs run as one ExpertBank (stacked [E, in, out] weights, same math and
        # same initial values as num_expert separate MLP layers).
        # The forward embeds [sparse user fields, all sequences] and the ad fields directly.
        sparse_names = [f.name for f in self.embedding.sparse_features]
        seq_names = [f.name for f in self.embedding.sequence_features]
        user_sparse = [n for n in self.user_fields if n in sparse_names]
        if self.user_fields != user_sparse + seq_names or any(n not in sparse_names for n in self.ad_fields):
            raise ValueError("MetaHeacLayer expects user_fields = sparse fields then every sequence field "
                             "(in schema order) and single-id ad fields")
        self.num_sparse = len(sparse_names)
        self.split_sparse = [len(user_sparse), len(self.ad_fields)]
        # Sequences in runs of equal max_len, each run looked up without the padding columns
        # global_ids adds to reach the longest sequence (20 of 70 columns for MetaHeac).
        emb_ = self.embedding
        self.seq_runs, start = [], 0
        for i, f in enumerate(emb_.sequence_features + [None]):
            if f is None or f.max_len != emb_.sequence_features[start].max_len:
                length = emb_.sequence_features[start].max_len
                cols = [self.num_sparse + s * emb_.max_len + j for s in range(start, i) for j in range(length)]
                self.seq_runs.append((start, i, length))
                self.register_buffer(f"seq_cols_{len(self.seq_runs) - 1}",
                                     paddle.to_tensor(np.array(cols, dtype="int64")), persistable=False)
                start = i
        self.register_buffer("sparse_cols", paddle.to_tensor(np.array(
            self.embedding.sparse_columns(user_sparse + self.ad_fields), dtype="int64")), persistable=False)
        self.experts = ExpertBank(num_expert, self.user_dim, mlp_dims, "relu", dropout, init=linear_init)
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
        look = self.embedding.lookup if table is None else (lambda i: lookup(table, i))
        # Two lookups (the single ids: static user + ad fields; the padded multi-hot ids) instead
        # of one lookup that pool/select then slice: slices of [B, W, d] have slow (double)
        # gradients on CPU; splits and concats do not.
        batch_size, emb_dim = ids.shape[0], self.embedding.dim
        static, ad = paddle.split(look(paddle.index_select(ids, self.sparse_cols, axis=1)), self.split_sparse, axis=1)
        all_weights = self.embedding.pool_weights(batch)  # [B, 7, max_len], no gradient
        pooled = []
        for run, (first, end, length) in enumerate(self.seq_runs):
            count = end - first
            seq = look(paddle.index_select(ids, getattr(self, f"seq_cols_{run}"), axis=1))
            weights = all_weights[:, first:end, :length].reshape([batch_size * count, 1, length])
            # [B*n, 1, L] @ [B*n, L, d]: measured faster to differentiate twice than a broadcast multiply + sum
            pooled.append(paddle.matmul(weights, seq.reshape([batch_size * count, length, emb_dim]))
                          .reshape([batch_size, count, emb_dim]))
        user = paddle.concat([static] + pooled, axis=1)  # [B, 14, d]
        # mean over the user fields as [1, 14] @ [B, 14, d]: its (double) gradient is a matmul, measured
        # 1.3-1.8x faster than paddle's mean gradient on CPU
        average = paddle.full([1, user.shape[1]], 1.0 / user.shape[1], dtype=user.dtype)
        task = paddle.concat([paddle.matmul(average, user), ad], axis=1).reshape([batch_size, -1])
        user_flat = user.reshape([batch_size, -1])
        gate = softmax(self.expert_gate(task, sub_params(params, "expert_gate")), axis=1)  # [B, K]
        outputs = self.experts(user_flat, sub_params(params, "experts"))  # [B, K, h]
        # [B, 1, K] @ [B, K, h]: measured 3-8x faster (first / second order) than a broadcast multiply + sum
        fea = paddle.matmul(gate.unsqueeze(1), outputs).squeeze(1)
        critic_gate = softmax(self.critic_gate(task, sub_params(params, "critic_gate")), axis=1)
        scores = F.sigmoid(self.critics(fea, sub_params(params, "critics")))  # [B, J]
        return paddle.sum(critic_gate * scores, axis=1)

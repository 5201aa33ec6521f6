"""MetaHeac (Zhu et al., KDD 2021, "Learning to Expand Audience via Meta Hybrid Experts and
Critics"): the network.

    user = [7 static field embeddings, 7 multi-hot fields mean-pooled]          [B, 14, d]
    task = [mean of the user fields, 6 ad field embeddings]                        [B, 7, d]
    fea  = sum_k softmax(expert_gate(task))_k * expert_k(user)                    hybrid experts
    pred = sum_j softmax(critic_gate(task))_j * sigmoid(critic_j(fea))             critics

All fields share one embedding table; field f owns rows [offset_f, offset_f + max_idx_f].
(PaddleRec keeps one table per field: the same parameters, but 20 lookups instead of one.)

``forward(ids, lengths, params=None)``: ``ids`` [B, 63] are global row ids (see ``global_ids``).
``params`` maps parameter names to fast weights; when it holds the table (``TABLE``) that tensor
is a row subset (see models.common.meta) and ``ids`` index into it.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import SparseEmbedding, pool, sequence_mask
from models.common.layers import MLP, sub_params
from models.common.meta import lookup, softmax

TABLE = "embedding.table.weight"  # the shared table's name in named_parameters()


class MetaHeacLayer(nn.Layer):
    def __init__(self, max_idxs, seq_lens, embed_dim, mlp_dims, num_expert, num_output, dropout=0.0,
                 sparse=True):
        """``max_idxs``: [[static x7], [multi-hot x7], [ad x6]] largest id of each field (PaddleRec's
        config layout); ``seq_lens``: padded width of each multi-hot field; ``sparse``: row-sparse
        gradients for the table in the ordinary forward pass (False only for the dense baseline)."""
        super().__init__()
        static, dynamic, ad = (list(m) for m in max_idxs)
        if len(dynamic) != len(seq_lens):
            raise ValueError(f"{len(dynamic)} multi-hot fields in max_idxs but {len(seq_lens)} seq_lens")
        self.num_static, self.num_ad = len(static), len(ad)
        self.seq_lens = list(seq_lens)
        sizes = [m + 1 for m in static + dynamic + ad]
        starts = np.cumsum([0] + sizes[:-1])
        # Offset of every input column: one column per static/ad field, seq_len per multi-hot field.
        widths = [1] * len(static) + self.seq_lens + [1] * len(ad)
        self.register_buffer("column_offsets", paddle.to_tensor(np.repeat(starts, widths).astype("int64")),
                             persistable=False)
        # Multi-hot fields are padded to a common width so that one masked mean pools all of them:
        # column map from the padded layout to input columns (extra slots are masked out).
        self.max_len = max(self.seq_lens)
        field_starts = len(static) + np.cumsum([0] + self.seq_lens[:-1])
        padded = [field_starts[f] + np.minimum(np.arange(self.max_len), w - 1) for f, w in enumerate(self.seq_lens)]
        layout = np.concatenate([np.arange(len(static))] + padded
                                + [len(static) + sum(self.seq_lens) + np.arange(len(ad))])
        self.register_buffer("layout", paddle.to_tensor(layout.astype("int64")), persistable=False)
        self.embedding = SparseEmbedding(int(sum(sizes)), embed_dim, sparse=sparse)
        # PaddleRec's nn.Embedding default per table: Xavier-uniform with the table's own shape.
        limits = np.repeat([np.sqrt(6.0 / (s + embed_dim)) for s in sizes], sizes).astype("float32")
        weight = self.embedding.weight
        weight.set_value(paddle.uniform(weight.shape, dtype=weight.dtype, min=-1.0, max=1.0)
                         * paddle.to_tensor(limits).astype(weight.dtype).unsqueeze(1))

        num_user_fields = len(static) + len(dynamic)
        self.user_dim = num_user_fields * embed_dim
        self.task_dim = (1 + len(ad)) * embed_dim
        hidden = mlp_dims[-1]
        # Every layer of mlp_dims is used (PaddleRec builds the second one but never applies it).
        self.experts = nn.LayerList([MLP(self.user_dim, mlp_dims, "relu", dropout) for _ in range(num_expert)])
        self.expert_gate = MLP(self.task_dim, [hidden, num_expert], "relu", last_activation=False)
        # num_output critics, each a Linear(hidden, 1) + sigmoid: one Linear computes all of them.
        self.critics = MLP(hidden, [num_output], last_activation=False)
        self.critic_gate = MLP(self.task_dim, [hidden, num_output], "relu", last_activation=False)

    def global_ids(self, raw_ids):
        """Per-field ids [B, 63] (columns static | multi-hot | ad) -> rows of the shared table."""
        return raw_ids + self.column_offsets

    def forward(self, ids, lengths, params=None):
        table = params.get(TABLE) if params is not None else None
        ids = paddle.index_select(ids, self.layout, axis=1)  # [B, 7 + 7 * max_len + 6]
        emb = self.embedding(ids) if table is None else lookup(table, ids)
        batch, dim, num_dynamic = ids.shape[0], emb.shape[-1], len(self.seq_lens)
        end = self.num_static + num_dynamic * self.max_len
        dynamic = emb[:, self.num_static:end].reshape([batch * num_dynamic, self.max_len, dim])
        mask = sequence_mask(lengths.reshape([-1]), self.max_len, dtype=emb.dtype)
        pooled = pool(dynamic, mask, "mean").reshape([batch, num_dynamic, dim])
        user = paddle.concat([emb[:, :self.num_static], pooled], axis=1)  # [B, 14, d]
        task = paddle.concat([user.mean(axis=1, keepdim=True), emb[:, end:]], axis=1).reshape([batch, -1])

        user_flat = user.reshape([batch, -1])
        gate = softmax(self.expert_gate(task, sub_params(params, "expert_gate")), axis=1)  # [B, K]
        outputs = paddle.stack([expert(user_flat, sub_params(params, f"experts.{k}"))
                                for k, expert in enumerate(self.experts)], axis=1)  # [B, K, h]
        fea = paddle.sum(gate.unsqueeze(-1) * outputs, axis=1)
        critic_gate = softmax(self.critic_gate(task, sub_params(params, "critic_gate")), axis=1)
        scores = F.sigmoid(self.critics(fea, sub_params(params, "critics")))  # [B, J]
        return paddle.sum(critic_gate * scores, axis=1)

"""Shared layers: FM terms against brute force, MLP fast weights, feature embeddings and pooling."""
import numpy as np
import paddle

from models.common.embedding import DenseEmbedding, FeatureEmbedding
from models.common.features import SequenceFeature, SparseFeature
from models.common.layers import MLP, FMInteraction


def test_fm_second_order_equals_pairwise_sum():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 5, 4)).astype("float32")
    expected = np.array([sum(v[b, i] @ v[b, j] for i in range(5) for j in range(i + 1, 5)) for b in range(3)])
    got = FMInteraction.second_order(paddle.to_tensor(v)).numpy().reshape(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert FMInteraction.first_order(paddle.to_tensor(v[:, :, :1])).shape == [3, 1]


def test_mlp_shapes_and_fast_weights():
    paddle.seed(0)
    mlp = MLP(6, [8, 4], last_activation=False)
    x = paddle.randn([5, 6])
    out = mlp(x)
    assert out.shape == [5, 4]
    same = {name: p for name, p in mlp.named_parameters()}
    np.testing.assert_allclose(mlp(x, params=same).numpy(), out.numpy())
    shifted = {name: p + 1.0 for name, p in mlp.named_parameters()}
    assert not np.allclose(mlp(x, params=shifted).numpy(), out.numpy())
    # Gradients flow into the fast weights (needed for second-order meta-learning).
    fast = {name: p * 1.0 for name, p in mlp.named_parameters()}
    mlp(x, params=fast).sum().backward()
    assert mlp.linears[0].weight.grad is not None


def test_feature_embedding_offsets_sharing_and_pooling():
    paddle.seed(0)
    features = [SparseFeature("user", 4, 3), SequenceFeature("history", 6, 3, max_len=3, pooling="mean"),
                SparseFeature("item", 6, 3, shared_with="history"), SequenceFeature("tags", 5, 3, max_len=2, pooling="sum")]
    layer = FeatureEmbedding(features)
    assert layer.num_rows == 4 + 6 + 5  # item shares history's table
    table = layer.weight.numpy()
    user, history, tags = table[:4], table[4:10], table[10:]
    batch = {"user": [1, 3], "item": [5, 0], "history": [[2, 5, 0], [0, 0, 0]], "history_length": [2, 0],
             "tags": [[1, 4], [3, 3]], "tags_length": [2, 1]}
    fields = layer({k: paddle.to_tensor(np.array(v)) for k, v in batch.items()})
    assert fields.shape == [2, 4, 3] and layer.names == ["user", "item", "history", "tags"]
    expected = [[user[1], history[5], history[[2, 5]].mean(0), tags[[1, 4]].sum(0)],
                [user[3], history[0], np.zeros(3), tags[3]]]  # an empty history pools to 0
    np.testing.assert_allclose(fields.numpy(), np.array(expected), rtol=1e-6, atol=1e-7)
    picked = layer.select(fields, ["history", "user", "tags"])
    np.testing.assert_allclose(picked.numpy(), fields.numpy()[:, [2, 0, 3]])


def test_dense_embedding_scales_vectors():
    layer = DenseEmbedding(2, 3)
    out = layer(paddle.to_tensor([[2.0, 0.0]]))
    np.testing.assert_allclose(out.numpy()[0, 0], 2 * layer.weight.numpy()[0, 0], rtol=1e-6)
    np.testing.assert_allclose(out.numpy()[0, 1], 0)


def test_expert_bank_equals_separate_mlps():
    """The batched ExpertBank is E independent MLPs: same initial values (same random draws in the
    same order) and the same forward on random weights, also with fast weights and twice
    differentiated."""
    from models.common.layers import ExpertBank

    paddle.set_default_dtype("float64")
    try:
        paddle.seed(3)
        reference = [MLP(7, [5, 4, 3]) for _ in range(4)]
        paddle.seed(3)
        bank = ExpertBank(4, 7, [5, 4, 3])
        for layer in range(3):
            np.testing.assert_array_equal(bank.__getattr__(f"weight_{layer}").numpy(),
                                          np.stack([m.linears[layer].weight.numpy() for m in reference]))
        rng = np.random.default_rng(0)
        weights = {n: paddle.to_tensor(rng.normal(size=p.shape)) for n, p in bank.named_parameters()}
        for name, value in weights.items():
            value.stop_gradient = False
        x = paddle.to_tensor(rng.normal(size=(6, 7)))
        out = bank(x, weights)  # [B, E, out]
        assert out.shape == [6, 4, 3]
        for e, mlp in enumerate(reference):
            per_expert = {f"linears.{i}.{kind}": weights[f"{kind}_{i}"][e] for i in range(3) for kind in ("weight", "bias")}
            np.testing.assert_allclose(out[:, e].numpy(), mlp(x, per_expert).numpy(), rtol=1e-12, atol=1e-12)
        # Twice differentiable (second-order meta-learning goes through it).
        grad, = paddle.grad((out ** 2).sum(), [weights["weight_0"]], create_graph=True)
        (grad ** 2).sum().backward()
        assert weights["weight_1"].grad is not None
    finally:
        paddle.set_default_dtype("float32")


def test_pool_weights_equal_pool():
    from models.common.embedding import FeatureEmbedding
    from models.common.features import SequenceFeature, SparseFeature

    features = [SparseFeature("a", 5, 3), SequenceFeature("s", 9, 3, max_len=4), SparseFeature("b", 6, 3),
                SequenceFeature("t", 7, 3, max_len=2, pooling="sum")]
    paddle.seed(0)
    fe = FeatureEmbedding(features)
    rng = np.random.default_rng(1)
    batch = {"a": rng.integers(0, 5, 8), "b": rng.integers(0, 6, 8), "s": rng.integers(0, 9, (8, 4)),
             "s_length": rng.integers(0, 5, 8), "t": rng.integers(0, 7, (8, 2)), "t_length": rng.integers(0, 3, 8)}
    batch = {k: paddle.to_tensor(v) for k, v in batch.items()}
    emb = fe.lookup(fe.global_ids(batch))
    expected = fe.select(fe.pool(emb, batch), ["s", "t"]).numpy()
    seq = emb[:, 2:].reshape([8, 2, fe.max_len, 3])
    got = paddle.sum(seq * fe.pool_weights(batch).unsqueeze(-1), axis=2)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert fe.sparse_columns(["b", "a"]) == [1, 0]

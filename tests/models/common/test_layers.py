"""Shared layers: FM terms against brute force, MLP fast weights, pooling."""
import numpy as np
import paddle

from models.common.embedding import DenseEmbedding, MultiHotEmbedding, pool, sequence_mask
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


def test_pooling_with_lengths_and_padding():
    emb = paddle.to_tensor(np.arange(12, dtype="float32").reshape(2, 3, 2))
    mask = sequence_mask(paddle.to_tensor([2, 0]), 3)
    np.testing.assert_allclose(mask.numpy(), [[1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(pool(emb, mask, "mean").numpy(), [[1, 2], [0, 0]])
    np.testing.assert_allclose(pool(emb, mask, "sum").numpy(), [[2, 4], [0, 0]])
    layer = MultiHotEmbedding(10, 3, mode="mean")
    ids = paddle.to_tensor([[4, 5, 0], [7, 0, 0]])
    table = layer.embedding.weight.numpy()
    np.testing.assert_allclose(layer(ids).numpy(), [table[[4, 5]].mean(0), table[7]], rtol=1e-6)
    np.testing.assert_allclose(layer(ids, paddle.to_tensor([1, 1])).numpy(), [table[4], table[7]], rtol=1e-6)


def test_dense_embedding_scales_vectors():
    layer = DenseEmbedding(2, 3)
    out = layer(paddle.to_tensor([[2.0, 0.0]]))
    np.testing.assert_allclose(out.numpy()[0, 0], 2 * layer.weight.numpy()[0, 0], rtol=1e-6)
    np.testing.assert_allclose(out.numpy()[0, 1], 0)

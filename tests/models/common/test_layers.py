"""Shared layers: FM terms against brute force, MLP fast weights, feature embeddings and pooling,
the hot-path formulations against the plain ops they replace, the merged-kernel Adam."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from models.common.base_model import Adam
from models.common.embedding import DenseEmbedding, FeatureEmbedding, RowSparseEmbedding
from models.common.features import SequenceFeature, SparseFeature
from models.common.layers import MLP, FMInteraction, add_bias, expanded, l2_normalize, split_views


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


def test_row_sparse_embedding_gradient_holds_each_row_once():
    """A training lookup's row-sparse gradient has distinct, ascending rows, each the sum of its
    positions' gradients (what nn.Embedding(sparse=True) gives with one row per position); the
    forward and, without gradient, the lookup are nn.Embedding's."""
    paddle.seed(3)
    plain = paddle.nn.Embedding(30, 4, sparse=True)
    distinct = RowSparseEmbedding(30, 4)
    distinct.weight.set_value(plain.weight.numpy())
    ids = paddle.to_tensor(np.random.default_rng(0).integers(0, 30, (6, 5)))
    upstream = paddle.rand([6, 5, 4])
    for layer in (plain, distinct):
        (layer(ids) * upstream).sum().backward()
    np.testing.assert_array_equal(distinct(ids).numpy(), plain(ids).numpy())
    got, expected = distinct.weight._grad_ivar(), plain.weight._grad_ivar()
    assert got.is_selected_rows() and got.rows() == sorted(set(ids.numpy().reshape(-1).tolist()))
    assert len(expected.rows()) == 30  # one row per position

    def dense(grad):
        out = np.zeros((30, 4), np.float32)
        np.add.at(out, np.array(grad.rows()), grad._get_tensor_from_selected_rows().numpy())
        return out
    np.testing.assert_allclose(dense(got), dense(expected), rtol=1e-6, atol=1e-7)
    with paddle.no_grad():
        np.testing.assert_array_equal(distinct(ids).numpy(), plain(ids).numpy())


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


def _value_and_grad(fn, x):
    """fn(x)'s value and d(sum of fn(x) * fixed weights)/dx, for comparing formulations."""
    x = paddle.to_tensor(x, stop_gradient=False)
    outs = fn(x)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    rng = np.random.default_rng(1)
    loss = sum((o * paddle.to_tensor(rng.normal(size=o.shape).astype("float32"))).sum() for o in outs)
    loss.backward()
    return [o.numpy() for o in outs], x.grad.numpy()


def test_split_views_equal_slices_in_value_and_gradient():
    x = np.random.default_rng(0).normal(size=(4, 3, 7)).astype("float32")
    for sizes, axis in (([1, 6], -1), ([2, 1], 1), ([1, 2, 4], 2)):
        bounds = np.cumsum([0] + sizes)

        def sliced(t):
            return [t[(slice(None),) * (axis % 3) + (slice(a, b),)] for a, b in zip(bounds[:-1], bounds[1:])]

        got, got_grad = _value_and_grad(lambda t: split_views(t, sizes, axis), x)
        want, want_grad = _value_and_grad(sliced, x)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)) and np.array_equal(got_grad, want_grad)
    # A part nobody uses gets a zero gradient.
    t = paddle.to_tensor(x, stop_gradient=False)
    head, _ = split_views(t, [1, 6])
    head.sum().backward()
    assert (t.grad.numpy()[..., 0] == 1).all() and (t.grad.numpy()[..., 1:] == 0).all()


def test_expanded_operands_give_the_broadcast_result_and_gradient():
    rng = np.random.default_rng(0)
    values, weight = rng.normal(size=(5, 3, 1)).astype("float32"), rng.normal(size=(1, 3, 4)).astype("float32")
    w = paddle.to_tensor(weight)
    got, got_grad = _value_and_grad(lambda v: paddle.multiply(*expanded(v, w)), values)
    want, want_grad = _value_and_grad(lambda v: v * w, values)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got_grad, want_grad)
    a, b = expanded(paddle.ones([2, 1]), paddle.ones([3]))
    assert a.shape == b.shape == [2, 3]


def test_add_bias_is_the_same_with_and_without_gradient():
    x = paddle.randn([6, 4])
    bias = paddle.create_parameter([4], "float32")
    with_grad = add_bias(x, bias)
    with paddle.no_grad():
        without = add_bias(x, bias)
    assert np.array_equal(with_grad.numpy(), without.numpy())
    experts, per_expert = paddle.randn([3, 6, 4]), paddle.create_parameter([3, 4], "float32")  # bias per leading index
    with paddle.no_grad():
        np.testing.assert_array_equal(add_bias(experts, per_expert).numpy(),
                                      (experts + per_expert.unsqueeze(1)).numpy())


def test_l2_normalize_matches_f_normalize():
    x = np.random.default_rng(0).normal(size=(8, 3, 5)).astype("float32")
    x[0, 0] = 0.0  # a zero vector stays zero (the epsilon), as with F.normalize
    got, got_grad = _value_and_grad(l2_normalize, x)
    want, want_grad = _value_and_grad(lambda t: F.normalize(t, axis=-1), x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_grad[1:], want_grad[1:], rtol=1e-5, atol=1e-6)
    assert (got[0][0, 0] == 0).all() and np.isfinite(got_grad[0, 0]).all()


def _train(optimizer_class, sparse, steps=6, **kwargs):
    """A table + a linear layer + a parameter first used at step 2, trained a few Adam steps."""
    rng = np.random.default_rng(0)
    table = paddle.create_parameter([50, 4], "float32")
    table.set_value(rng.normal(size=(50, 4)).astype("float32"))
    weight = paddle.create_parameter([4, 3], "float32")
    weight.set_value(rng.normal(size=(4, 3)).astype("float32"))
    late = paddle.create_parameter([3], "float32")
    late.set_value(np.ones(3, dtype="float32"))
    optimizer = optimizer_class(learning_rate=0.05, parameters=[table, weight, late], **kwargs)
    for step in range(steps):
        ids = paddle.to_tensor(np.random.default_rng(step).integers(0, 50, 20))
        out = F.embedding(ids, table, sparse=sparse) @ weight
        loss = (out * out).mean() + ((out.mean(0) * late).sum() if step >= 2 else 0.0)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
    return [p.numpy() for p in (table, weight, late)]


@pytest.mark.parametrize("sparse, lazy", [(False, False), (True, True)])
def test_merged_kernel_adam_equals_paddles_adam(sparse, lazy, monkeypatch):
    """The project's Adam (paddle's merged multi-tensor kernel where every gradient is dense) trains as
    paddle's own Adam, within float rounding: a parameter without a gradient yet is skipped (its bias
    correction starts at its first use), row-sparse gradients take the per-parameter kernel (lazy:
    non-lazy Adam on them is refused, see test_reliability). And the merged kernel really runs on
    dense gradients."""
    from paddle import _C_ops
    calls = []
    merged = _C_ops.merged_adam_
    monkeypatch.setattr(_C_ops, "merged_adam_", lambda *a, **k: calls.append(1) or merged(*a, **k))
    ours = _train(Adam, sparse, lazy_mode=lazy)
    theirs = _train(paddle.optimizer.Adam, sparse, lazy_mode=lazy)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(calls) == (0 if sparse else 4)  # steps 2..5: every parameter has a dense gradient
    assert not np.allclose(ours[2], 1.0)  # the late parameter trained from step 2 on

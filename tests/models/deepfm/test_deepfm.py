"""DeepFM network and reader."""
import importlib
import os

import numpy as np
import paddle
import pytest

from models.common.data import DataFormatError
from tests.conftest import model_config, DEEPFM_CONFIG, write_criteo_like
from models.common.loading import load_dygraph_model
from tools.utils.runtime import load_model

FOLDER = os.path.dirname(DEEPFM_CONFIG)


def small_config(*overrides):
    return model_config(DEEPFM_CONFIG, ["hyper_parameters.sparse_feature_number=1000",
                                       "hyper_parameters.fc_sizes=[16,8]", *overrides])


def test_forward_is_sigmoid_of_first_order_fm_and_dnn():
    paddle.seed(0)
    config = small_config()
    model = load_dygraph_model(DEEPFM_CONFIG)().create_model(config)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, size=(4, 26))
    dense = rng.random((4, 13)).astype("float32")
    batch = {str(i + 1): paddle.to_tensor(ids[:, i]) for i in range(26)}
    batch["dense_feature"] = paddle.to_tensor(dense)
    pred = model(batch).numpy()
    assert pred.shape == (4, 1) and ((pred > 0) & (pred < 1)).all()

    # The same prediction from the parameters, in numpy.
    table = model.embedding.weight.numpy()
    w, v = table[:, 0], table[:, 1:]
    wd = model.dense_weight.weight.numpy()[0, :, 0]
    vd = model.dense_embedding.weight.numpy()[0]
    first = w[ids].sum(1) + dense @ wd + model.bias.numpy()[0]
    emb = np.concatenate([v[ids], dense[:, :, None] * vd[None]], axis=1)  # [4, 39, 9]
    fm = np.array([sum(emb[b, i] @ emb[b, j] for i in range(39) for j in range(i + 1, 39)) for b in range(4)])
    hidden = emb.reshape(4, -1)
    for linear in model.dnn.linears:
        hidden = np.maximum(hidden @ linear.weight.numpy() + linear.bias.numpy(), 0)
    out = model.dnn_out.linears[0]
    deep = (hidden @ out.weight.numpy() + out.bias.numpy())[:, 0]
    expected = 1 / (1 + np.exp(-(first + fm + deep)))
    np.testing.assert_allclose(pred[:, 0], expected, rtol=1e-4, atol=1e-5)


def test_dense_fields_folded_into_products_give_the_gradients_of_their_embeddings():
    """The network never builds the dense fields' [B, 13, dim] embeddings (their terms are products
    of the values with small matrices): every parameter's gradient equals that of DNN and FM over
    the joined embeddings, as the paper writes them."""
    from models.common.layers import FMInteraction, split_views
    paddle.seed(0)
    model = load_dygraph_model(DEEPFM_CONFIG)().create_model(small_config())
    rng = np.random.default_rng(1)
    batch = {str(i + 1): paddle.to_tensor(rng.integers(0, 1000, size=16)) for i in range(26)}
    batch["dense_feature"] = paddle.to_tensor(rng.random((16, 13)).astype("float32"))

    def joined(m):
        weights, vectors = split_views(m.embedding(batch), [1, m.dim])
        dense = batch["dense_feature"]
        first = paddle.sum(paddle.concat([weights, m.dense_weight(dense)], axis=1), axis=1) + m.bias
        embeddings = paddle.concat([vectors, m.dense_embedding(dense)], axis=1)
        deep = m.dnn_out(m.dnn(embeddings.flatten(start_axis=1)))
        return paddle.nn.functional.sigmoid(first + FMInteraction.second_order(embeddings) + deep)

    grads = []
    for forward in (model, joined):
        model.clear_gradients()
        out = forward(batch) if forward is model else forward(model)
        (out * paddle.arange(16, dtype="float32").reshape([16, 1])).sum().backward()
        grads.append({n: p.grad.numpy().copy() for n, p in model.named_parameters()})
    assert set(grads[0]) == set(grads[1]) and "dense_embedding.weight" in grads[0]
    for name in grads[0]:
        np.testing.assert_allclose(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_learns_a_simple_rule(tmp_path):
    paddle.seed(1)
    write_criteo_like(tmp_path, 512, seed=5)
    config, dm = load_model(DEEPFM_CONFIG, ["hyper_parameters.sparse_feature_number=1000", "hyper_parameters.fc_sizes=[16,8]",
                                            "hyper_parameters.optimizer.learning_rate=0.01"])
    model = dm.create_model(config)
    optimizer = dm.create_optimizer(model, config)
    dataset = importlib.import_module("models.common.datasets.criteo").RecDataset([str(tmp_path / "part-0.txt")], config)
    batch = {k: paddle.to_tensor(v) for k, v in dataset.take(np.arange(512)).items()}
    metrics, _ = dm.create_metrics("train")
    losses = []
    for _ in range(30):
        loss, _, _ = dm.train_forward(model, metrics, batch, config)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_reader_shapes_on_shipped_sample():
    config = model_config(DEEPFM_CONFIG, ["hyper_parameters.sparse_feature_number=1000001"])  # real rows' ids
    reader = importlib.import_module("models.common.datasets.criteo")
    path = os.path.join(FOLDER, "data", "train", "sample_train.txt")
    dataset = reader.RecDataset([path], config)
    batch = dataset.take(np.arange(len(dataset)))
    label, dense = batch["click"], batch["dense_feature"]
    sparse = np.stack([batch[str(i)] for i in range(1, 27)], axis=1)
    rows = sum(1 for _ in open(path))
    assert label.shape == (rows,) and sparse.shape == (rows, 26) and dense.shape == (rows, 13)
    assert set(np.unique(label)) == {0, 1}
    assert sparse.dtype == np.int64 and dense.dtype == np.float32 and (sparse < 1000001).all()
    assert 0 <= dense.min() and dense.max() <= 1


def test_reader_rejects_ids_outside_the_table(tmp_path):
    (path,) = write_criteo_like(tmp_path, 20, num_ids=5000)
    reader = importlib.import_module("models.common.datasets.criteo")
    with pytest.raises(DataFormatError, match=f"{path}, line [0-9]+: [0-9]+ has value [0-9]+ outside "
                                              r"\[0, 999\] \(vocabulary of [0-9]+: 1000 ids\)"):
        reader.RecDataset([path], small_config(f"runner.data_cache_dir={tmp_path / 'cache'}"))

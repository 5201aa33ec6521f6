"""DCN-v2: the cross layer against the paper's formula, its reduction to DCN's cross layer, both
structures against a hand-written forward, the paper's initialisation, bad keys refused and a
train-then-infer run on the shipped sample that learns."""
import json
import os

import numpy as np
import paddle
import pytest

from models.common.layers import CrossNetV2
from tests.conftest import REPO, model_config, run_tool
from tools.utils.config import ConfigError
from tools.utils.runtime import load_model

CONFIG = os.path.join(REPO, "models", "rank", "dcn_v2", "config.yaml")


def _numpy_cross(x0, weights, biases):
    x = x0
    for w, b in zip(weights, biases):
        x = x0 * (x @ w + b) + x  # Eq. 1 of the paper, with paddle's [in, out] layout
    return x


def test_cross_layers_follow_the_paper():
    paddle.seed(0)
    cross = CrossNetV2(5, 2)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(5, 5)).astype("float32") for _ in range(2)]
    biases = [rng.normal(size=5).astype("float32") for _ in range(2)]
    for i in range(2):
        getattr(cross, f"weight_{i}").set_value(weights[i])
        getattr(cross, f"bias_{i}").set_value(biases[i])
    x0 = rng.normal(size=(4, 5)).astype("float32")
    np.testing.assert_allclose(cross(paddle.to_tensor(x0)).numpy(), _numpy_cross(x0, weights, biases), rtol=1e-5)


def test_a_rank_one_weight_is_dcns_cross_layer():
    """W = w 1^T (the paper: W = 1 w^T in its layout) and b = 0 give DCN-v1's x0 (x^T w) + x."""
    paddle.seed(0)
    cross = CrossNetV2(6, 1)
    w = np.random.default_rng(1).normal(size=6).astype("float32")
    cross.weight_0.set_value(np.outer(w, np.ones(6, dtype="float32")))
    x0 = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
    np.testing.assert_allclose(cross(paddle.to_tensor(x0)).numpy(), x0 * (x0 @ w)[:, None] + x0, rtol=1e-5)


def _model(structure):
    config, dm = load_model(CONFIG, [f"hyper_parameters.structure={structure}", "hyper_parameters.fc_sizes=[8, 4]",
                                     "hyper_parameters.sparse_feature_number=1000", "hyper_parameters.cross_layers=2"])
    paddle.seed(3)
    return dm.create_model(config)


def _batch(rows=6):
    rng = np.random.default_rng(4)
    batch = {"click": rng.integers(0, 2, rows), "dense_feature": rng.random((rows, 13)).astype("float32")}
    batch.update({str(i): rng.integers(0, 1000, rows) for i in range(1, 27)})
    return {k: paddle.to_tensor(v) for k, v in batch.items()}


@pytest.mark.parametrize("structure", ["parallel", "stacked"])
def test_structures_against_a_hand_written_forward(structure):
    model = _model(structure)
    batch = _batch()
    ids = np.stack([batch[str(i)].numpy() for i in range(1, 27)], axis=1)  # every field shares one table
    table = model.inputs.embedding.weight.numpy()
    x0 = np.concatenate([table[ids].reshape(len(ids), -1), batch["dense_feature"].numpy()], axis=1)
    cross = _numpy_cross(x0, [getattr(model.cross, f"weight_{i}").numpy() for i in range(2)],
                         [getattr(model.cross, f"bias_{i}").numpy() for i in range(2)])

    def mlp(layer, x, relu_last=True):
        for i, linear in enumerate(layer.linears):
            x = x @ linear.weight.numpy() + linear.bias.numpy()
            if relu_last or i < len(layer.linears) - 1:
                x = np.maximum(x, 0)
        return x

    out = mlp(model.dnn, cross) if structure == "stacked" else np.concatenate([cross, mlp(model.dnn, x0)], axis=1)
    expected = 1 / (1 + np.exp(-mlp(model.logit, out, relu_last=False)))
    assert x0.shape[1] == 26 * 9 + 13
    np.testing.assert_allclose(model(batch).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_initialisation():
    """Cross weights He-normal (std sqrt(2 / d)), biases zero, embeddings N(0, 1e-4)."""
    model = _model("parallel")
    d = 26 * 9 + 13
    assert abs(model.cross.weight_0.numpy().std() / np.sqrt(2 / d) - 1) < 0.02
    assert not model.cross.bias_0.numpy().any()
    assert abs(model.inputs.embedding.weight.numpy().std() / 1e-4 - 1) < 0.05


def test_bad_keys_are_refused():
    with pytest.raises(ConfigError, match="'hyper_parameters.structure' must be one of parallel, stacked"):
        model_config(CONFIG, ["hyper_parameters.structure=wide"])
    with pytest.raises(ConfigError, match="'hyper_parameters.cross_layers' must be an int >= 1"):
        model_config(CONFIG, ["hyper_parameters.cross_layers=0"])


def test_sample_trains_and_evaluates(tmp_path):
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "infer")
    train = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={ckpt}")
    assert train.returncode == 0, train.stdout + train.stderr
    history = json.load(open(os.path.join(ckpt, "metrics.json")))["train"]
    assert history[1]["loss"] < history[0]["loss"]
    infer = run_tool("tools/infer.py", "-m", CONFIG, "-o", f"runner.model_save_path={ckpt}",
                     f"runner.infer_output_path={out}")
    assert infer.returncode == 0, infer.stdout + infer.stderr
    headline = json.load(open(os.path.join(out, "metrics.json")))["headline"]
    assert headline["auc"] > 0.75  # the sample's hidden model is learnable (DeepFM: 0.80)

"""Our MetaHeac meta-step against the official code (easezyc/MetaHeac ccdcf8b): the official
model's initial weights are loaded into our network, and one second-order meta-step on the same
rows must give the same meta-loss and the same gradient for every parameter.
tests/fixtures/metaheac_official/reference.npz comes from make_reference.py beside it."""
import os

import numpy as np
import paddle

from tests.conftest import REPO
from models.common.meta_model import meta_loss
from tools.utils.config import load_config
from models.common.loading import load_module

FOLDER = os.path.join(REPO, "models", "multitask", "metaheac")
FIXTURE = os.path.join(REPO, "tests", "fixtures", "metaheac_official")
REFERENCE = os.path.join(FIXTURE, "reference.npz")
_SIZES = load_module(os.path.join(FIXTURE, "make_reference.py"))
EMBED, EXPERTS, LOCAL_LR, MAX_IDS = _SIZES.EMBED, _SIZES.EXPERTS, _SIZES.LOCAL_LR, _SIZES.MAX_IDS
MLP_DIMS, OUTPUTS, ROWS, TASKS = _SIZES.MLP_DIMS, _SIZES.OUTPUTS, _SIZES.ROWS, _SIZES.TASKS
STATIC, DYNAMIC, AD = _SIZES.STATIC, _SIZES.DYNAMIC, _SIZES.AD  # the official field order


def metaheac():
    """MetaHeac's dygraph_model module, loaded from its folder (module names repeat across models)."""
    return load_module(os.path.join(FOLDER, "dygraph_model.py"))


def official_to_ours(ref, prefix):
    """The official parameters (per-field tables, per-expert Linears, per-critic Linears; torch
    weights [out, in]) in our layout (one fused table, stacked experts, one critic Linear)."""
    get = lambda name: ref[f"{prefix}/{name}"]  # noqa: E731
    tables = ([get(f"embedding.static_emb.embeddings.{i}.weight") for i in range(len(STATIC))]
              + [get(f"embedding.dynamic_emb.embeddings.{i}.weight") for i in range(len(DYNAMIC))]
              + [get(f"embedding.ad_emb.embeddings.{i}.weight") for i in range(len(AD))])
    ours = {"embedding.table.weight": np.concatenate(tables)}
    for layer, index in enumerate((0, 2)):  # nn.Sequential(Linear, ReLU, Linear, ReLU)
        ours[f"experts.weight_{layer}"] = np.stack([get(f"mlp.{e}.mlp.{index}.weight").T for e in range(EXPERTS)])
        ours[f"experts.bias_{layer}"] = np.stack([get(f"mlp.{e}.mlp.{index}.bias") for e in range(EXPERTS)])
    for name, theirs in (("expert_gate", "attention_layer"), ("critic_gate", "output_attention_layer")):
        for layer, index in enumerate((0, 2)):
            ours[f"{name}.linears.{layer}.weight"] = get(f"{theirs}.{index}.weight").T
            ours[f"{name}.linears.{layer}.bias"] = get(f"{theirs}.{index}.bias")
    ours["critics.linears.0.weight"] = np.concatenate([get(f"output_layer.{j}.weight").T for j in range(OUTPUTS)], 1)
    ours["critics.linears.0.bias"] = np.concatenate([get(f"output_layer.{j}.bias") for j in range(OUTPUTS)])
    return ours


def half(ref, name):
    columns = ["label"] + STATIC + DYNAMIC + [d + "_length" for d in DYNAMIC] + AD
    batch = {c: np.stack([ref[f"{name}/{t}/{c}"] for t in range(TASKS)]) for c in columns}
    batch = {c: paddle.to_tensor(v.astype("float32" if c == "label" else "int64")) for c, v in batch.items()}
    batch["aid"] = paddle.zeros([TASKS, ROWS], dtype="int64")
    return batch


def our_meta_step(first_order):
    """-> (meta-loss, {parameter: dense gradient}) of our meta-step from the official weights."""
    ref = np.load(REFERENCE)
    mh = metaheac()
    dm = mh.DygraphModel()
    config = load_config(os.path.join(FOLDER, "config.yaml"), [
        f"hyper_parameters.max_idxs={MAX_IDS}", f"hyper_parameters.embed_dim={EMBED}",
        f"hyper_parameters.mlp_dims={list(MLP_DIMS)}", f"hyper_parameters.num_expert={EXPERTS}",
        f"hyper_parameters.num_output={OUTPUTS}", f"hyper_parameters.task_count={TASKS}",
        f"hyper_parameters.batch_size={ROWS}", f"hyper_parameters.local_lr={LOCAL_LR}", "hyper_parameters.dropout=0.0",
    ], spec=dm.full_config_spec)
    model = dm.create_model(config)
    weights = official_to_ours(ref, "init")
    assert set(weights) == set(model.state_dict())
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in weights.items()})
    loss, _ = meta_loss(model, half(ref, "support"), half(ref, "query"), LOCAL_LR, first_order, dm.create_loss)
    loss.backward()
    grads = {}
    for name, param in model.named_parameters():
        grad = param.grad
        if grad.is_selected_rows():  # the table's row-sparse gradient, made dense
            grads[name] = np.zeros(param.shape, np.float32)
            np.add.at(grads[name], np.array(grad.rows()), grad.numpy())
        else:
            grads[name] = grad.numpy()
    return float(loss), grads


def test_second_order_meta_step_equals_the_official_code():
    ref = np.load(REFERENCE)
    loss, grads = our_meta_step(first_order=False)
    np.testing.assert_allclose(loss, float(ref["loss"]), rtol=1e-6)
    expected = official_to_ours(ref, "grad")
    for name, grad in grads.items():
        scale = np.abs(expected[name]).max()
        assert scale > 0, name
        # float32 sums in another order: agreement to 1e-4 of the largest entry; a different
        # method misses by far more (see the first-order test below)
        np.testing.assert_allclose(grad, expected[name], rtol=0, atol=1e-4 * scale, err_msg=name)


def test_first_order_is_measurably_not_the_official_code():
    """The tolerance above can tell methods apart: first-order MAML misses the official
    (second-order) gradient by more than 1e-3 of its scale."""
    ref = np.load(REFERENCE)
    _, grads = our_meta_step(first_order=True)
    expected = official_to_ours(ref, "grad")
    worst = max(np.abs(grads[n] - expected[n]).max() / np.abs(expected[n]).max() for n in grads)
    assert worst > 1e-3, worst

"""No silent wrong results: every run does what its config says, or stops with one clear line.

Strict checkpoint loading, run manifests (stale epochs), the folder infer evaluates, refusals of
unsupported combinations, output folders checked before work, declared hyper-parameter types and
ranges, the optimizer key and leftovers of interrupted saves.
"""
import json
import importlib
import os

import numpy as np
import paddle
import pytest

from tests.conftest import DEEPFM_CONFIG, REPO, run_tool
from tests.tools.test_bad_input import assert_user_error, ok, tiny
from tools.utils import checkpoint
from tools.utils.config import ConfigError, load_config
from tools.utils.runtime import load_model

METAHEAC = os.path.join(REPO, "models", "multitask", "metaheac")
METAHEAC_CONFIG = os.path.join(METAHEAC, "config.yaml")
INFER_META = "models/multitask/metaheac/infer_meta.py"


def model_config(config_path, *overrides):
    """(config checked against the model's declared keys, DygraphModel instance)."""
    return load_model(config_path, list(overrides))



class Pair(paddle.nn.Layer):
    def __init__(self, n=2, extra=False):
        super().__init__()
        self.a = paddle.nn.Linear(n, 1)
        if extra:
            self.b = paddle.nn.Linear(1, 1)


# ---- 4. strict checkpoint loading -----------------------------------------------------------------
@pytest.mark.parametrize("other, fragment", [
    (Pair(3), "parameter 'a.weight' has shape [2, 1] in the checkpoint but [3, 1] in the model"),
    (Pair(2, extra=True), "parameter 'b.weight' [1, 1] is missing from the checkpoint"),
])
def test_loader_names_the_parameter_that_does_not_fit(tmp_path, other, fragment):
    model = Pair(2)
    checkpoint.save_checkpoint(str(tmp_path), 0, model, paddle.optimizer.Adam(parameters=model.parameters()))
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.load_checkpoint(str(tmp_path), 0, other, config_key="runner.model_save_path")
    assert fragment in str(error.value) and str(error.value).startswith("runner.model_save_path:")
    assert isinstance(error.value, ConfigError)  # a user error: one line, exit 2


def test_loader_refuses_extra_parameter(tmp_path):
    model = Pair(2, extra=True)
    checkpoint.save_checkpoint(str(tmp_path), 0, model, paddle.optimizer.Adam(parameters=model.parameters()))
    with pytest.raises(checkpoint.CheckpointError, match="the checkpoint has parameter 'b.bias'"):
        checkpoint.load_checkpoint(str(tmp_path), 0, Pair(2))
    checkpoint.load_checkpoint(str(tmp_path), 0, Pair(2, extra=True))  # the same network loads


def test_infer_with_another_network_is_refused(criteo_run):
    tmp, overrides = criteo_run
    ok(run_tool("tools/trainer.py", "-m", DEEPFM_CONFIG, "-o", *overrides, "runner.epochs=1",
                "runner.infer_start_epoch=0", "runner.infer_end_epoch=1"))
    result = run_tool("tools/infer.py", "-m", DEEPFM_CONFIG, "-o", *overrides, "hyper_parameters.fc_sizes=[64,32]",
                      "runner.infer_start_epoch=0", "runner.infer_end_epoch=1")
    assert_user_error(result, "runner.infer_load_path", "parameter '", "shape")
    # The training run's config differs from this one: said at the start.
    assert "note: hyper_parameters.fc_sizes: [32, 16] in the saved run, [64, 32] now" in result.stdout


def _metaheac_checkpoint(folder, *overrides):
    """A MetaHeac checkpoint (untrained) for the sample config with ``overrides``."""
    config, dm = model_config(METAHEAC_CONFIG, *overrides)
    model = dm.create_model(config)
    os.makedirs(folder, exist_ok=True)
    checkpoint.save_checkpoint(str(folder), 0, model, dm.create_optimizer(model, config))


def test_infer_meta_with_another_network_is_refused(tmp_path):
    _metaheac_checkpoint(tmp_path / "ckpt", "hyper_parameters.embed_dim=8")
    result = run_tool(INFER_META, "-m", METAHEAC_CONFIG, "-o", f"runner.model_save_path={tmp_path / 'ckpt'}",
                      f"runner.infer_output_path={tmp_path / 'out'}")
    assert_user_error(result, "runner.infer_load_path", "parameter 'embedding.table.weight' has shape")
    assert " aid " not in result.stdout  # refused before fine-tuning any task


# ---- 5. run manifest: stale epochs and resume -----------------------------------------------------
def test_fresh_run_into_folder_with_checkpoints(tmp_path):
    ok(tiny(tmp_path, "runner.epochs=3"))
    run = json.load(open(tmp_path / "ckpt" / "run.json"))
    assert run["model_config"]["hyper_parameters.optimizer.learning_rate"] == 0.05
    result = tiny(tmp_path, "runner.epochs=1")
    assert_user_error(result, "runner.model_save_path", "already holds checkpoints (epochs [0, 1, 2])",
                      "runner.overwrite=true")
    assert checkpoint.complete_epochs(str(tmp_path / "ckpt")) == [0, 1, 2]  # nothing touched
    log = ok(tiny(tmp_path, "runner.epochs=1", "runner.overwrite=true"))
    assert "deleted the earlier run's epochs [0, 1, 2]" in log
    assert checkpoint.complete_epochs(str(tmp_path / "ckpt")) == [0]  # no stale epochs 1-2 beside the new 0
    assert [h["epoch"] for h in json.load(open(tmp_path / "ckpt" / "metrics.json"))["train"]] == [0]
    # A later resume continues this run (epoch 0), not the deleted one.
    log = ok(tiny(tmp_path, "runner.epochs=2", "runner.resume=true"))
    assert "continuing at epoch 1" in log and "epoch 1 done" in log


def test_resume_refuses_checkpoints_of_another_model_config(tmp_path):
    ok(tiny(tmp_path, "runner.epochs=1"))
    result = tiny(tmp_path, "runner.epochs=2", "runner.resume=true", "hyper_parameters.optimizer.learning_rate=0.1")
    assert_user_error(result, "runner.resume", "different model config",
                      "hyper_parameters.optimizer.learning_rate: 0.05 in the saved run, 0.1 now")
    os.remove(tmp_path / "ckpt" / "run.json")
    assert_user_error(tiny(tmp_path, "runner.epochs=2", "runner.resume=true"), "runner.resume", "no run.json")


def test_resume_with_mismatched_checkpoint_names_the_parameter(tmp_path):
    model = Pair(2)
    optimizer = paddle.optimizer.Adam(parameters=model.parameters())
    checkpoint.save_checkpoint(str(tmp_path), 0, model, optimizer)
    other = Pair(3)
    with pytest.raises(checkpoint.CheckpointError, match=r"runner.model_save_path: .*'a.weight'"):
        checkpoint.load_checkpoint(str(tmp_path), 0, other, paddle.optimizer.Adam(parameters=other.parameters()),
                                   config_key="runner.model_save_path")


# ---- 6. the folder infer evaluates ----------------------------------------------------------------
def test_infer_load_path_follows_overridden_save_path(tmp_path):
    config, _ = model_config(DEEPFM_CONFIG, f"runner.model_save_path={tmp_path / 'x'}")
    assert config.get("runner.infer_load_path") == str(tmp_path / "x")
    both, _ = model_config(DEEPFM_CONFIG, f"runner.model_save_path={tmp_path / 'x'}",
                           f"runner.infer_load_path={tmp_path / 'y'}")
    assert both.get("runner.infer_load_path") == str(tmp_path / "y")
    # A config that deliberately evaluates another folder keeps it.
    text = open(DEEPFM_CONFIG).read().replace('infer_load_path: "output_model_deepfm"', 'infer_load_path: "pretrained"')
    other = tmp_path / "model" / "config.yaml"
    other.parent.mkdir()
    other.write_text(text)
    assert load_config(str(other), [f"runner.model_save_path={tmp_path / 'x'}"]).get(
        "runner.infer_load_path") == str(tmp_path / "model" / "pretrained")


def test_infer_logs_folder_and_epochs_first(tmp_path):
    ok(tiny(tmp_path, "runner.epochs=2"))
    log = ok(tiny(tmp_path, "runner.infer_start_epoch=0", "runner.infer_end_epoch=2",
                  script="tools/infer.py"))
    first = log.splitlines()[0]
    assert f"evaluating epoch(s) [0, 1] of {tmp_path / 'ckpt'} (runner.infer_load_path)" in first


# ---- 7. unsupported combinations are refused, or made to work ------------------------------------
def test_metaheac_refuses_data_parallel(tmp_path):
    result = run_tool("tools/trainer.py", "-m", METAHEAC_CONFIG, "-o", "runner.use_fleet=true",
                      f"runner.model_save_path={tmp_path / 'ckpt'}")
    assert_user_error(result, "runner.use_fleet", "metaheac does not support data-parallel")
    launched = run_tool("tools/trainer.py", "-m", METAHEAC_CONFIG, "-o", f"runner.model_save_path={tmp_path / 'ckpt'}",
                        env={"PADDLE_TRAINERS_NUM": "2"})
    assert_user_error(launched, "runner.use_fleet", "2 process(es) launched")
    assert not (tmp_path / "ckpt").exists()


def test_mlp_dropout_is_twice_differentiable():
    from models.common.layers import MLP

    paddle.seed(0)
    mlp = MLP(4, [6, 3], dropout=0.5)
    x = paddle.randn([8, 4])
    params = {name: p * 1.0 for name, p in mlp.named_parameters()}
    loss = mlp(x, params).sum()
    grads = paddle.grad(loss, list(params.values()), create_graph=True)
    sum(g.sum() for g in grads).backward()  # paddle's dropout: "dropout_grad doesn't have any grad op"
    assert mlp.linears[0].weight.grad is not None
    out = mlp(x).numpy()
    assert (out == 0).mean() > 0.3  # about half of the last layer's units dropped
    mlp.eval()
    np.testing.assert_array_equal(mlp(x).numpy(), mlp(x).numpy())  # no dropout in evaluation


def test_metaheac_second_order_with_dropout():
    config, dm = model_config(METAHEAC_CONFIG, "hyper_parameters.dropout=0.2", "hyper_parameters.embed_dim=4",
                              "hyper_parameters.mlp_dims=[6,4]")
    assert config.get("hyper_parameters.first_order") is False
    paddle.seed(0)
    model = dm.create_model(config)
    rng = np.random.default_rng(0)
    tasks, rows = 2, 5

    schema = importlib.import_module("models.common.datasets.lookalike").schema(config)

    def part():  # ids 0/1 are inside every vocabulary
        return {name: rng.integers(0, 2, (tasks, rows) + ((slot.width,) if slot.width else ()))
                for name, slot in schema.slots.items()}

    batch = {"support": part(), "query": part(), "replaced": 0}
    metrics, _ = dm.create_metrics("train")
    loss, _, _ = dm.train_forward(model, metrics, batch, config)
    loss.backward()
    assert np.isfinite(float(loss)) and model.embedding.weight.grad is not None


# ---- 8. output folders checked before any work ---------------------------------------------------
def test_infer_unwritable_output_fails_at_once(tmp_path):
    ok(tiny(tmp_path, "runner.epochs=1"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = tiny(tmp_path, "runner.epochs=1", f"runner.infer_output_path={blocker / 'out'}", script="tools/infer.py")
    assert_user_error(result, "runner.infer_output_path", "cannot write")
    assert "infer epoch" not in result.stdout


def test_infer_meta_unwritable_output_fails_at_once(tmp_path):
    _metaheac_checkpoint(tmp_path / "ckpt")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_tool(INFER_META, "-m", METAHEAC_CONFIG, "-o", f"runner.model_save_path={tmp_path / 'ckpt'}",
                      f"runner.infer_output_path={blocker / 'out'}")
    assert_user_error(result, "runner.infer_output_path", "cannot write")
    assert " aid " not in result.stdout


# ---- 9. declared hyper-parameter types and ranges --------------------------------------------------
@pytest.mark.parametrize("config_path, override, key", [
    (METAHEAC_CONFIG, "hyper_parameters.task_count=0", "hyper_parameters.task_count"),
    (METAHEAC_CONFIG, "hyper_parameters.batch_size=0", "hyper_parameters.batch_size"),
    (METAHEAC_CONFIG, "hyper_parameters.embed_dim=0", "hyper_parameters.embed_dim"),
    (METAHEAC_CONFIG, "hyper_parameters.mlp_dims=[]", "hyper_parameters.mlp_dims"),
    (METAHEAC_CONFIG, "hyper_parameters.dropout=1.0", "hyper_parameters.dropout"),
    (METAHEAC_CONFIG, "hyper_parameters.max_idxs=[[1],[-2]]", "hyper_parameters.max_idxs[1][0]"),
    (METAHEAC_CONFIG, "hyper_parameters.optimizer.global_learning_rate=0", "global_learning_rate"),
    (DEEPFM_CONFIG, "hyper_parameters.fc_sizes=[0]", "hyper_parameters.fc_sizes[0]"),
    (DEEPFM_CONFIG, "hyper_parameters.fc_sizes=[]", "hyper_parameters.fc_sizes"),
    (DEEPFM_CONFIG, "hyper_parameters.sparse_feature_number=0", "hyper_parameters.sparse_feature_number"),
    (DEEPFM_CONFIG, "hyper_parameters.sparse_feature_dim=2.5", "hyper_parameters.sparse_feature_dim"),
    (DEEPFM_CONFIG, "hyper_parameters.optimizer.learning_rate=-1", "hyper_parameters.optimizer.learning_rate"),
    (DEEPFM_CONFIG, "runner.seed=-1", "runner.seed"),
])
def test_declared_ranges_name_the_key(config_path, override, key):
    with pytest.raises(ConfigError) as error:
        model_config(config_path, override)
    assert key in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("override, key", [("hyper_parameters.task_count=0", "hyper_parameters.task_count"),
                                           ("runner.seed=-1", "runner.seed")])
def test_bad_value_is_one_line_not_a_traceback(tmp_path, override, key):
    result = run_tool("tools/trainer.py", "-m", METAHEAC_CONFIG, "-o", override,
                      f"runner.model_save_path={tmp_path / 'ckpt'}")
    assert_user_error(result, key)
    assert len(result.stderr.strip().splitlines()) == 1


def test_int_learning_rate_is_a_float(tmp_path):
    config, dm = model_config(DEEPFM_CONFIG, "hyper_parameters.optimizer.learning_rate=1")
    assert config.get("hyper_parameters.optimizer.learning_rate") == 1.0
    assert isinstance(config.get("hyper_parameters.optimizer.learning_rate"), float)
    ok(tiny(tmp_path, "runner.epochs=1", "hyper_parameters.optimizer.learning_rate=1"))


# ---- 10. hyper_parameters.optimizer.class and weight_decay are honoured ---------------------------
@pytest.mark.parametrize("name, cls", [("SGD", "SGD"), ("sgd", "SGD"), ("adamw", "AdamW"), ("Adagrad", "Adagrad"),
                                       ("Adam", "Adam")])
def test_optimizer_class_is_honoured(name, cls):
    config, dm = model_config(DEEPFM_CONFIG, f"hyper_parameters.optimizer.class={name}",
                              "hyper_parameters.sparse_feature_number=100", "hyper_parameters.fc_sizes=[4]")
    optimizer = dm.create_optimizer(dm.create_model(config), config)
    assert type(optimizer).__name__ == cls
    assert optimizer.get_lr() == pytest.approx(0.001)


@pytest.mark.parametrize("name, lazy, refused", [("Adam", "false", True), ("AdamW", "true", True), ("AdamW", "false", True),
                                                  ("Adam", "true", False), ("SGD", "false", False)])
def test_row_sparse_gradients_with_an_unreliable_optimizer_are_refused(name, lazy, refused):
    """paddle's non-lazy Adam on row-sparse gradients gives other parameters at each run, its AdamW
    crashes on them: refused before any work, naming both keys."""
    overrides = (f"hyper_parameters.optimizer.class={name}", f"hyper_parameters.optimizer.lazy_mode={lazy}",
                 "hyper_parameters.sparse_gradients=true")
    if refused:
        with pytest.raises(ConfigError, match=r"sparse_gradients.*true.*" + name):
            model_config(DEEPFM_CONFIG, *overrides)
    else:
        model_config(DEEPFM_CONFIG, *overrides)


def test_optimizer_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"hyper_parameters.optimizer.class.*Adam, AdamW, SGD, Adagrad.*'Lion'"):
        model_config(DEEPFM_CONFIG, "hyper_parameters.optimizer.class=Lion")
    with pytest.raises(ConfigError, match="hyper_parameters.optimizer.lazy_mode"):
        model_config(DEEPFM_CONFIG, "hyper_parameters.optimizer.class=SGD", "hyper_parameters.optimizer.lazy_mode=true")


def test_weight_decay_settable_when_absent_and_metaheac_uses_the_factory():
    config, dm = model_config(os.path.join(REPO, "tests", "fixtures", "tiny_model", "config.yaml"),
                              "hyper_parameters.optimizer.weight_decay=0.01", "hyper_parameters.optimizer.class=SGD")
    optimizer = dm.create_optimizer(dm.create_model(config), config)
    assert type(optimizer).__name__ == "SGD" and optimizer.regularization._coeff == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="hyper_parameters.optimizer.weight_decay"):
        model_config(DEEPFM_CONFIG, "hyper_parameters.optimizer.weight_decay=-1")
    config, dm = model_config(METAHEAC_CONFIG, "hyper_parameters.optimizer.class=AdamW",
                              "hyper_parameters.optimizer.global_learning_rate=0.003")
    optimizer = dm.create_optimizer(dm.create_model(config), config)
    assert type(optimizer).__name__ == "AdamW" and optimizer.get_lr() == pytest.approx(0.003)


def test_trainer_really_trains_with_sgd(tmp_path):
    ok(tiny(tmp_path, "runner.epochs=1", "hyper_parameters.optimizer.class=SGD"))
    state = paddle.load(str(tmp_path / "ckpt" / "0" / "rec.pdopt"))
    assert not any("moment" in key for key in state)  # Adam would store moment1/moment2 per parameter
    ok(tiny(tmp_path, "runner.epochs=1", "runner.overwrite=true"))
    assert any("moment" in key for key in paddle.load(str(tmp_path / "ckpt" / "0" / "rec.pdopt")))


# ---- 11. leftovers of an interrupted save --------------------------------------------------------
def test_leftovers_are_removed_by_the_next_run(tmp_path):
    stale = tmp_path / "ckpt" / ".tmp-3-xyz"
    stale.mkdir(parents=True)
    (stale / "rec.pdparams").write_bytes(b"\0" * 1000)
    (tmp_path / "ckpt" / ".metrics.json.abc").write_text("{")
    log = ok(tiny(tmp_path, "runner.epochs=1"))
    assert "removed 2 leftover(s)" in log and ".tmp-3-xyz" in log
    assert sorted(n for n in os.listdir(tmp_path / "ckpt") if not n.startswith(".")) == ["0", "metrics.json", "run.json"]
    stale.mkdir()
    log = ok(tiny(tmp_path, "runner.epochs=2", "runner.resume=true"))
    assert "removed 1 leftover(s)" in log and not stale.exists()

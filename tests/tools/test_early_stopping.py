"""Validation every epoch, early stopping on the validation logloss, best/ kept and restored
(runner.valid_data_dir / valid_fraction / early_stop_patience), on the tiny logistic model."""
import json
import os

import numpy as np
import paddle
import pytest

from tests.conftest import REPO, run_tool

TINY = os.path.join(REPO, "tests", "fixtures", "tiny_model", "config.yaml")


def write_rows(folder, rows, seed, flip=False):
    """id,label,x1..x4 with label = [x1 > 0] (flipped: the opposite, so that learning the training
    rule makes the validation loss grow)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    x = rng.normal(size=(rows, 4)).round(4)
    label = (x[:, 0] > 0).astype(int) ^ int(flip)
    with open(os.path.join(folder, "part-0.csv"), "w") as f:
        f.write("id,label,x1,x2,x3,x4\n")
        for i in range(rows):
            f.write(f"{i},{label[i]}," + ",".join(str(v) for v in x[i]) + "\n")


def train(tmp_path, *overrides):
    result = run_tool("tools/trainer.py", "-m", TINY, "-o", f"runner.train_data_dir={tmp_path / 'train'}",
                      f"runner.model_save_path={tmp_path / 'ckpt'}", "runner.print_interval=1000", *overrides)
    return result


def metrics(tmp_path):
    with open(tmp_path / "ckpt" / "metrics.json") as f:
        return json.load(f)


def params(path):
    return {k: v.numpy() for k, v in paddle.load(str(path / "rec.pdparams")).items()}


def test_stops_when_validation_loss_stops_falling_and_restores_best(tmp_path):
    write_rows(tmp_path / "train", 400, seed=0)
    write_rows(tmp_path / "valid", 200, seed=1, flip=True)
    result = train(tmp_path, "runner.epochs=10", f"runner.valid_data_dir={tmp_path / 'valid'}",
                   "runner.early_stop_patience=2")
    assert result.returncode == 0, result.stderr
    history = metrics(tmp_path)["train"]
    losses = [h["valid_logloss"] for h in history]
    assert [h["epoch"] for h in history] == [0, 1, 2]  # epoch 0 best, 2 epochs without gain
    assert losses[0] < losses[1] < losses[2] and all("valid_auc" in h for h in history)
    assert history[-1]["loss"] < history[0]["loss"]  # it did learn the training rule
    assert metrics(tmp_path)["early_stopping"]["best_epoch"] == 0
    assert "early stopping" in result.stdout and "restored the best epoch 0" in result.stdout
    ckpt = tmp_path / "ckpt"
    assert sorted(n for n in os.listdir(ckpt) if not n.startswith(".")) == ["0", "1", "2", "best", "metrics.json", "run.json"]
    best, epoch0, epoch2 = params(ckpt / "best"), params(ckpt / "0"), params(ckpt / "2")
    assert all(np.array_equal(best[k], epoch0[k]) for k in best)
    assert not all(np.array_equal(best[k], epoch2[k]) for k in best)
    # tools/infer.py evaluates the best epoch by default
    result = run_tool("tools/infer.py", "-m", TINY, "-o", f"runner.model_save_path={ckpt}",
                      f"runner.test_data_dir={tmp_path / 'valid'}", "runner.epochs=10")
    assert result.returncode == 0, result.stderr
    assert "evaluating epoch(s) [0]" in result.stdout


def test_best_is_last_epoch_while_validation_improves(tmp_path):
    write_rows(tmp_path / "train", 400, seed=0)
    write_rows(tmp_path / "valid", 200, seed=1)
    result = train(tmp_path, "runner.epochs=3", f"runner.valid_data_dir={tmp_path / 'valid'}",
                   "runner.early_stop_patience=1")
    assert result.returncode == 0, result.stderr
    history = metrics(tmp_path)["train"]
    assert len(history) == 3 and metrics(tmp_path)["early_stopping"]["best_epoch"] == 2
    assert history[2]["valid_logloss"] < history[0]["valid_logloss"]
    assert history[2]["valid_auc"] > 0.9


def test_valid_fraction_holds_out_the_last_rows(tmp_path):
    write_rows(tmp_path / "train", 400, seed=0)
    result = train(tmp_path, "runner.epochs=1", "runner.valid_fraction=0.25", "runner.shuffle=false")
    assert result.returncode == 0, result.stderr
    assert "validation: the last 100 of 400 training rows" in result.stdout
    history = metrics(tmp_path)["train"]
    assert history[0]["samples"] == 300  # the held-out rows are not trained on
    assert "valid_logloss" in history[0]


@pytest.mark.parametrize("overrides, message", [
    (["runner.early_stop_patience=2"], "runner.early_stop_patience needs validation data"),
    (["runner.valid_fraction=1.5"], "'runner.valid_fraction' must be a number > 0 and < 1"),
    (["runner.valid_fraction=0.2", "runner.valid_data_dir=x"], "set runner.valid_data_dir or runner.valid_fraction"),
    (["runner.valid_fraction=0.2", "runner.early_stop_patience=-1"], "'runner.early_stop_patience' must be an int >= 0"),
    (["runner.valid_data_dir=/nonexistent"], "runner.valid_data_dir: data directory"),
])
def test_bad_validation_settings_name_the_key(tmp_path, overrides, message):
    write_rows(tmp_path / "train", 40, seed=0)
    result = train(tmp_path, *overrides)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr

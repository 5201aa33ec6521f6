"""Share-Bottom: the MMoE task configuration over a shared bottom MLP; learns the census sample."""
import json
import os

import numpy as np
import paddle
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import model_config, REPO, run_tool
from models.common.loading import load_dygraph_model

CONFIG = os.path.join(REPO, "models", "multitask", "sharebottom", "config.yaml")


def test_towers_read_one_shared_bottom(tmp_path):
    config = model_config(CONFIG, [f"runner.data_cache_dir={tmp_path}"])
    dm = load_dygraph_model(CONFIG)()
    dm.check_config(config)
    paddle.seed(0)
    model = dm.create_model(config)
    x = np.random.default_rng(0).normal(size=(5, 440)).astype("float32")
    out = model({"features": paddle.to_tensor(x)})
    assert set(out) == {"income", "marital"}
    h = model.bottom(paddle.to_tensor(x))
    assert h.shape == [5, 117]
    for i, task in enumerate(("income", "marital")):
        expected = 1 / (1 + np.exp(-model.towers.towers[i](h).numpy()))
        assert np.allclose(out[task].numpy(), expected, atol=1e-6)


def test_sharebottom_learns_the_census_sample(tmp_path):
    out = [f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.infer_load_path={tmp_path / 'ckpt'}",
           f"runner.infer_output_path={tmp_path / 'infer'}", f"runner.data_cache_dir={tmp_path / 'cache'}"]
    for tool in ("tools/trainer.py", "tools/infer.py"):
        result = run_tool(tool, "-m", CONFIG, "-o", *out)
        assert result.returncode == 0, result.stdout + result.stderr
    headline = json.loads((tmp_path / "infer" / "metrics.json").read_text())["headline"]
    assert headline["auc_income"] > 0.85 and headline["auc_marital"] > 0.9, headline
    import pandas as pd
    frame = pd.read_csv(tmp_path / "infer" / "predictions_epoch3.csv")
    assert roc_auc_score(frame["income"], frame["pred_income"]) == pytest.approx(headline["auc_income"], abs=2e-3)

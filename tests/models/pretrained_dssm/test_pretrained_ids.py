"""Retrieval models initialised from pretrained item-id embeddings (.npy + ids), frozen or fine-tuned."""
import json
import os

import numpy as np
import paddle
import pytest

from tests.conftest import REPO, run_tool

DSSM = os.path.join(REPO, "models", "recall", "dssm", "config.yaml")
INFO = os.path.join(REPO, "datasets", "movielens", "sample", "dataset.json")


def pretrained(tmp_path, dim=16, extra_ids=(99999,)):
    """Vectors for every other item of the sample (by raw id) plus ids the data set lacks."""
    with open(INFO) as f:
        raw = json.load(f)["item_raw_id"]
    raw_ids = np.array(raw[1::2] + list(extra_ids), dtype=np.int64)
    vectors = np.random.default_rng(0).normal(size=(len(raw_ids), dim)).astype(np.float32)
    np.save(tmp_path / "items.npy", vectors)
    np.savetxt(tmp_path / "items.txt", raw_ids, fmt="%d")
    return raw, raw_ids, vectors


@pytest.mark.parametrize("freeze", [True, False])
def test_pretrained_item_rows_are_loaded_and_frozen_or_tuned(tmp_path, freeze):
    raw, raw_ids, vectors = pretrained(tmp_path)
    out = tmp_path / "ckpt"
    result = run_tool("tools/trainer.py", "-m", DSSM, "-o", f"runner.model_save_path={out}", "runner.epochs=1",
                      f"hyper_parameters.pretrained_item_embedding={tmp_path / 'items.npy'}",
                      f"hyper_parameters.freeze_pretrained={str(freeze).lower()}")
    assert result.returncode == 0, result.stderr
    assert f"{len(raw_ids) - 1} of {len(raw)} item ids initialised" in result.stdout
    assert "1 ids of the file are not in the data set" in result.stdout
    # the run's initial table: the same config and seed as the trainer's
    from tools.utils.config import load_config
    from models.common.loading import load_dygraph_model
    from tools.utils.runtime import seed_everything

    dm = load_dygraph_model(DSSM)()
    config = load_config(DSSM, [f"hyper_parameters.pretrained_item_embedding={tmp_path / 'items.npy'}"],
                         spec=dm.full_config_spec)
    seed_everything(config.get("runner.seed"))
    model = dm.create_model(config)
    initial = model.embedding.weight.numpy()
    offset = model.embedding.table_offset["item_id"]
    codes = np.array([raw.index(r) for r in raw_ids[:-1]])  # encoded ids of the known raw ids
    np.testing.assert_array_equal(initial[offset + codes], vectors[:-1])
    trained = paddle.load(str(out / "0" / "rec.pdparams"))["embedding.table.weight"].numpy()
    untouched = np.setdiff1d(np.arange(1, len(raw)), codes)
    assert not np.allclose(trained[offset + untouched], initial[offset + untouched])  # the other items train
    if freeze:
        np.testing.assert_array_equal(trained[offset + codes], vectors[:-1])
    else:
        assert not np.allclose(trained[offset + codes], vectors[:-1])


def test_wrong_width_names_the_key(tmp_path):
    pretrained(tmp_path, dim=8)
    result = run_tool("tools/trainer.py", "-m", DSSM, "-o", f"runner.model_save_path={tmp_path / 'ckpt'}",
                      "runner.epochs=1", f"hyper_parameters.pretrained_item_embedding={tmp_path / 'items.npy'}")
    assert result.returncode == 2
    assert "hyper_parameters.pretrained_item_embedding: vectors of 8 values, but hyper_parameters.embed_dim is 16" \
        in result.stderr

"""The four two-tower retrieval models: every mode trains on the shipped sample through the
runners' code, evaluation retrieves with faiss, exported embeddings reproduce the model's
scores, the temperature changes the loss, runs are reproducible, bad configs are refused."""
import json
import os

import numpy as np
import paddle
import pytest

from conftest import REPO, run_tool
from tools.infer import infer
from tools.trainer import train
from tools.utils.runtime import parse_args, setup

MODELS = ("dssm", "youtube_dnn", "youtube_sbc", "facebook_dssm")
SAMPLE = os.path.join(REPO, "datasets", "movielens", "sample")


def config_of(model):
    return os.path.join(REPO, "models", "recall", model, "config.yaml")


def context(model, tmp_path, *overrides):
    args = parse_args("test", ["-m", config_of(model), "-o", f"runner.model_save_path={tmp_path / 'ckpt'}",
                               f"runner.data_cache_dir={tmp_path / 'cache'}", "runner.print_interval=1000",
                               *overrides])
    return setup(args, distributed=False)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["point", "pair", "list"])
def test_every_model_trains_in_every_mode(model, mode, tmp_path):
    ctx = context(model, tmp_path, f"hyper_parameters.mode={mode}", "runner.epochs=2", "runner.train_batch_size=256",
                  "runner.infer_start_epoch=1", "runner.infer_end_epoch=2")
    history = train(ctx)
    assert history[1]["loss"] < history[0]["loss"]
    values = infer(context(model, tmp_path, f"hyper_parameters.mode={mode}", "runner.epochs=2", "runner.train_batch_size=256",
                           "runner.infer_start_epoch=1", "runner.infer_end_epoch=2"))["epoch1"]
    for k in (10, 50, 100):
        assert 0.0 <= values[f"hit@{k}"] <= 1.0 and values[f"recall@{k}"] == values[f"hit@{k}"]
        assert values[f"ndcg@{k}"] <= values[f"hit@{k}"] and values[f"mrr@{k}"] <= values[f"ndcg@{k}"]
    assert values["hit@10"] <= values["hit@50"] <= values["hit@100"]


@pytest.mark.parametrize("model", MODELS)
def test_in_batch_negatives_for_every_model(model, tmp_path):
    history = train(context(model, tmp_path, "hyper_parameters.negatives=in_batch", "hyper_parameters.mode=list",
                            "hyper_parameters.logq_correction=true", "runner.epochs=2", "runner.train_batch_size=256"))
    assert history[1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize("model", MODELS)
def test_train_then_infer_through_the_tools_beats_most_popular(model, tmp_path):
    """Each model's shipped config, as a user runs it; the sample is learnable."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    common = ["-m", config_of(model), "-o", f"runner.model_save_path={ckpt}", f"runner.data_cache_dir={tmp_path / 'c'}"]
    done = run_tool("tools/trainer.py", *common)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_tool("tools/infer.py", *common, f"runner.infer_output_path={out}", "hyper_parameters.retrieval.index=hnsw")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    headline, values = metrics["headline"], metrics["infer"][-1]
    assert headline["hit@50"] > headline["popular_hit@50"] + 0.1
    assert 0.9 <= values["hnsw_recall_vs_exact@50"] <= 1.0  # 400 items: HNSW is nearly exact
    emb = out / "embeddings_epoch4"
    users, items = np.load(emb / "user_emb.npy"), np.load(emb / "item_emb.npy")
    assert users.shape == (250, 32 if model != "youtube_dnn" else 16) and items.shape == (400, users.shape[1])
    assert (np.load(emb / "item_ids.npy") == np.arange(1, 401)).all()
    assert (np.load(emb / "item_raw_ids.npy") == np.arange(1, 401)).all()  # the sample's raw ids are 1..400
    assert (out / "recall_at_k_epoch4.svg").read_text().startswith("<svg")
    with open(out / "retrieval_epoch4.json") as f:
        assert len(json.load(f)["recall_curve"]) == 100


@pytest.mark.parametrize("model", ["dssm", "youtube_dnn"])
def test_exported_embeddings_reproduce_the_model_scores(model, tmp_path):
    from tools.utils.checkpoint import load_checkpoint
    from models.common.data.loader import create_dataset
    from models.common.loading import load_reader

    ctx = context(model, tmp_path, "runner.epochs=1", "runner.infer_start_epoch=0", "runner.infer_end_epoch=1",
                  f"runner.infer_output_path={tmp_path / 'out'}")
    train(ctx)
    infer(ctx)
    emb = tmp_path / "out" / "embeddings_epoch0"
    users, items = np.load(emb / "user_emb.npy"), np.load(emb / "item_emb.npy")
    model_layer = ctx.dygraph_model.create_model(ctx.config)
    load_checkpoint(str(tmp_path / "ckpt"), 0, model_layer)
    model_layer.eval()
    dataset = create_dataset(load_reader(ctx.config, "infer"), ctx.config, "infer")
    batch = {k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in dataset.take(np.arange(40)).items()}
    with paddle.no_grad():
        scores = model_layer(batch).numpy()  # sim(user, held-out item) from the network
    targets = np.load(emb / "test_items.npy")[:40]
    np.testing.assert_allclose(scores, (users[:40] * items[targets - 1]).sum(axis=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_temperature_changes_the_loss(model, tmp_path):
    losses = []
    for temperature in (1.0, 0.2):
        ctx = context(model, tmp_path, f"hyper_parameters.temperature={temperature}")
        dm = ctx.dygraph_model
        paddle.seed(1)
        net = dm.create_model(ctx.config)
        from models.common.data.loader import create_dataset
        from models.common.loading import load_reader
        dataset = create_dataset(load_reader(ctx.config, "train"), ctx.config, "train")
        batch = {k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in dataset.take(np.arange(64)).items()}
        paddle.seed(5)
        loss, _, _ = dm.train_forward(net, dm.create_metrics()[0], batch, ctx.config)
        losses.append(float(loss))
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_same_seed_same_parameters_and_metrics(tmp_path):
    results = []
    for run in ("a", "b"):
        ctx = context("youtube_sbc", tmp_path / run, "runner.epochs=1", "runner.infer_start_epoch=0",
                      "runner.infer_end_epoch=1")
        history = train(ctx)
        values = infer(ctx)["epoch0"]
        state = paddle.load(str(tmp_path / run / "ckpt" / "0" / "rec.pdparams"))
        results.append((history[0]["loss"], values, {k: v.numpy() for k, v in state.items()}))
    assert results[0][0] == results[1][0] and results[0][1] == results[1][1]
    for name, value in results[0][2].items():
        assert (value == results[1][2][name]).all(), name
    ctx = context("youtube_sbc", tmp_path / "c", "runner.epochs=1", "runner.seed=7")
    assert train(ctx)[0]["loss"] != results[0][0]


@pytest.mark.parametrize("override, message", [
    ("hyper_parameters.mode=triplet", "hyper_parameters.mode"),
    ("hyper_parameters.similarity=euclid", "hyper_parameters.similarity"),
    ("hyper_parameters.temperature=0", "hyper_parameters.temperature"),
    ("hyper_parameters.negatives=zipf", "hyper_parameters.negatives"),
    ("hyper_parameters.pair_loss=logistic", "hyper_parameters.pair_loss"),
])
def test_bad_config_is_refused_naming_the_key(override, message, tmp_path):
    from tools.utils.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        context("dssm", tmp_path, override)


def test_bad_config_exits_2_with_one_line(tmp_path):
    done = run_tool("tools/trainer.py", "-m", config_of("dssm"), "-o", "hyper_parameters.dataset_info_path=/nonexistent/d.json",
                    f"runner.model_save_path={tmp_path / 'ckpt'}")
    assert done.returncode == 2 and "hyper_parameters.dataset_info_path" in done.stderr, done.stderr[-2000:]


def test_youtube_dnn_user_tower_must_end_with_embed_dim(tmp_path):
    from tools.utils.config import ConfigError

    with pytest.raises(ConfigError, match="user_fc_sizes.*embed_dim"):
        context("youtube_dnn", tmp_path, "hyper_parameters.user_fc_sizes=[64,32]")


def test_item_out_of_vocabulary_names_file_and_line(tmp_path):
    lines = open(os.path.join(SAMPLE, "train", "train.txt")).read().splitlines()
    lines[6] = lines[6].rsplit("item_id:", 1)[0] + "item_id:401"  # the sample has items 1..400
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.txt").write_text("\n".join(lines) + "\n")
    done = run_tool("tools/trainer.py", "-m", config_of("dssm"), "-o", f"runner.train_data_dir={tmp_path / 'train'}",
                    f"runner.model_save_path={tmp_path / 'ckpt'}")
    assert done.returncode == 2 and "train.txt, line 7" in done.stderr and "item_id" in done.stderr, done.stderr


def test_resume_draws_the_same_negatives(tmp_path):
    """Negatives come from paddle's generator, seeded per epoch by the trainer: a resumed run ends
    with the parameters of the uninterrupted one."""
    def run(folder, *extra):
        done = run_tool("tools/trainer.py", "-m", config_of("dssm"), "-o", f"runner.model_save_path={tmp_path / folder}",
                        f"runner.data_cache_dir={tmp_path / 'cache'}", *extra)
        assert done.returncode == 0, done.stderr[-2000:]

    run("full", "runner.epochs=2")
    run("part", "runner.epochs=1")
    run("part", "runner.epochs=2", "runner.resume=true")
    a = paddle.load(str(tmp_path / "full" / "1" / "rec.pdparams"))
    b = paddle.load(str(tmp_path / "part" / "1" / "rec.pdparams"))
    for name in a:
        assert (a[name].numpy() == b[name].numpy()).all(), name


def test_ml1m_layout_end_to_end(shared_data, tmp_path):
    """The ml-1m code path (ratings.dat, users.dat, movies.dat) on the real movies and users and
    the 299,418 real ratings of ../shared/data (the complete ratings.dat is not there): preprocessed,
    read and embedded. (Training on it: see the readme.)"""
    from datasets.movielens import preprocess_retrieval

    source = os.path.join(shared_data, "ml-1m")
    parts = [os.path.join(source, "subset_chrono_split_zulvaf", f"data_{n}.tsv") for n in ("valid", "test")]
    if not all(os.path.isfile(p) for p in parts):
        pytest.skip("the ml-1m subset is not present")
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("movies.dat", "users.dat"):
        (raw / name).write_bytes(open(os.path.join(source, "full", name), "rb").read())
    with open(raw / "ratings.dat", "w") as out:
        for part in parts:
            for line in open(part).read().splitlines()[1:]:
                out.write("::".join(line.split("\t")) + "\n")
    preprocess_retrieval.main(["--raw", str(raw), "--out", str(tmp_path / "data")])
    with open(tmp_path / "data" / "dataset.json") as f:
        info = json.load(f)
    assert info["vocab"]["item_id"] == 3884 and info["rows"]["test"] == 5755 and info["max_genres"] == 6
    d = tmp_path / "data"
    ctx = context("youtube_sbc", tmp_path, f"runner.test_data_dir={d / 'test'}",
                  f"hyper_parameters.dataset_info_path={d / 'dataset.json'}")
    from models.common.data.loader import create_dataset
    from models.common.loading import load_reader

    dataset = create_dataset(load_reader(ctx.config, "infer"), ctx.config, "infer")  # every row checked
    model = ctx.dygraph_model.create_model(ctx.config)
    batch = {k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in dataset.take(np.arange(64)).items()}
    assert len(dataset) == 5755 and model.user_embedding(batch).shape == [64, 32]

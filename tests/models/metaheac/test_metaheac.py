"""MetaHeac: fast-weight math, readers, infer_meta protocol and the two commands end to end."""
import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import paddle
import pytest

from conftest import REPO, run_tool
from models.common import meta_model
from models.common.data import DataFormatError
from models.common.datasets import lookalike
from tools.utils.config import Config, read_config
from tools.utils.runtime import load_model
from models.common.loading import load_dygraph_model, load_module

FOLDER = os.path.join(REPO, "models", "multitask", "metaheac")
CONFIG = os.path.join(FOLDER, "config.yaml")
SAMPLE_TRAIN = os.path.join(FOLDER, "data", "train", "train_stage1.npz")
TINY_MAX_IDXS = [[3, 2, 20, 5, 7, 2, 1], [30, 20, 12, 40, 30, 20, 20], [9, 9, 5, 6, 4, 3]]


def _modules():
    from benchmarks.baselines import paddlerec_metaheac

    return load_dygraph_model(CONFIG), load_module(os.path.join(FOLDER, "net.py")), paddlerec_metaheac


def _config(*overrides):
    return load_model(CONFIG, list(overrides))


def _random_rows(rng, n, max_idxs=TINY_MAX_IDXS, aid=1):
    """Columns of ``n`` rows in the published layout, ids within ``max_idxs``."""
    cols = {"label": rng.integers(0, 2, n), "aid": np.full(n, aid)}
    for name, top in zip(lookalike.STATIC, max_idxs[0]):
        cols[name] = rng.integers(0, top + 1, n)
    for name, top, width in zip(lookalike.DYNAMIC, max_idxs[1], lookalike.SEQ_LENS):
        length = rng.integers(0, width + 1, n)
        ids = rng.integers(0, top, (n, width))
        cols[name] = np.where(np.arange(width) < length[:, None], ids, top)
        cols[name + "_length"] = length
    for name, top in zip(lookalike.AD, max_idxs[2]):
        cols[name] = np.full(n, rng.integers(0, top + 1))
    return {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}


def _tiny(dtype="float32", seed=0, **kw):
    """A small MetaHeac net and a random meta-batch (2 tasks x 6 rows) for it."""
    _, net, _ = _modules()
    schema = lookalike.schema(Config({"hyper_parameters": {"max_idxs": TINY_MAX_IDXS, "embed_dim": kw.get("dim", 4)}},
                                     "tiny.yaml"))
    paddle.set_default_dtype(dtype)
    try:
        paddle.seed(seed)
        model = net.MetaHeacLayer(schema, lookalike.STATIC + lookalike.DYNAMIC, lookalike.AD, kw.get("mlp", [5, 3]),
                                  num_expert=2, num_output=2)
    finally:
        paddle.set_default_dtype("float32")
    rng = np.random.default_rng(seed)
    parts = [_random_rows(rng, 6, aid=t) for t in range(4)]
    for part in parts:
        part["label"] = part["label"].astype(dtype)

    def stack(tasks):
        return {k: paddle.to_tensor(np.stack([p[k] for p in tasks])) for k in parts[0]}

    return model, stack(parts[:2]), stack(parts[2:])


def _task(batch, t):
    return {k: v[t] for k, v in batch.items()}


# ---- fast-weight math ------------------------------------------------------------------------
def test_fast_weight_forward_equals_normal_forward():
    from models.common.embedding import compact_ids

    _modules()
    model, support, _ = _tiny()
    model.eval()
    batch = _task(support, 0)
    unique, (local,) = compact_ids([model.global_ids(batch)])
    params = meta_model.task_params(model, unique)
    assert len(unique) < model.embedding.weight.shape[0]  # really a subset of the table
    np.testing.assert_allclose(model(batch, params, local).numpy(), model(batch).numpy(), rtol=1e-6, atol=1e-7)


def test_forward_equals_straightforward_reference():
    """The optimised forward (split lookups without padding columns, pooling as a batched matmul,
    the experts as one ExpertBank) is the plain network: one lookup + pool + select, each expert
    its own MLP, the gated sums written out - on random weights (biases included)."""
    import paddle.nn.functional as F

    _modules()
    model, support, _ = _tiny("float64", mlp=[5, 3])
    rng = np.random.default_rng(5)
    for _, p in model.named_parameters():
        p.set_value(rng.normal(size=p.shape))
    batch = _task(support, 1)
    emb = model.embedding
    fields = emb.pool(emb.lookup(emb.global_ids(batch)), batch)
    user = emb.select(fields, model.user_fields)
    ad = emb.select(fields, model.ad_fields)
    task = paddle.concat([user.mean(axis=1, keepdim=True), ad], axis=1).reshape([user.shape[0], -1])
    user = user.reshape([user.shape[0], -1])
    experts = []
    for e in range(model.experts.num_expert):
        h = user
        for i in range(len(model.experts.dims)):
            h = F.relu(paddle.matmul(h, getattr(model.experts, f"weight_{i}")[e]) + getattr(model.experts, f"bias_{i}")[e])
        experts.append(h)
    gate = F.softmax(model.expert_gate(task), axis=1)
    fea = sum(gate[:, e:e + 1] * experts[e] for e in range(len(experts)))
    critic_gate = F.softmax(model.critic_gate(task), axis=1)
    expected = paddle.sum(critic_gate * F.sigmoid(model.critics(fea)), axis=1)
    np.testing.assert_allclose(model(batch).numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_order", [True, False])
def test_row_subset_query_loss_equals_dense_update(first_order):
    dm_class, _, bench = _modules()
    dm = dm_class()
    model, support, query = _tiny("float64")
    lr = 0.5  # large, so that the inner step matters
    sparse_loss, _ = meta_model.meta_loss(model, support, query, lr, first_order, dm.create_loss)
    sparse_loss.backward()
    sparse_grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()
                    if n != "embedding.table.weight"}
    model.clear_gradients()
    dense_loss = bench.dense_meta_loss(model, support, query, lr, first_order, dm.create_loss)
    dense_loss.backward()
    np.testing.assert_allclose(float(sparse_loss), float(dense_loss), rtol=1e-10)
    for name, grad in sparse_grads.items():
        np.testing.assert_allclose(grad, dict(model.named_parameters())[name].grad.numpy(), rtol=1e-7, atol=1e-12)


def test_second_order_gradient_matches_numerical_check():
    dm_class, _, _ = _modules()
    dm = dm_class()
    model, support, query = _tiny("float64", dim=3, mlp=[4])
    lr = 1.0
    target = model.experts.weight_0

    def loss(first_order=False):
        return meta_model.meta_loss(model, support, query, lr, first_order, dm.create_loss)[0]

    grads = {}
    for first_order in (False, True):
        model.clear_gradients()
        loss(first_order).backward()
        grads[first_order] = target.grad.numpy().copy()
    assert np.abs(grads[False] - grads[True]).max() > 1e-6  # the second-order term is not negligible
    # Central differences of the meta-loss along a random direction.
    rng = np.random.default_rng(1)
    direction = rng.normal(size=target.shape)
    base = target.numpy().copy()
    eps = 1e-5
    values = []
    for sign in (1, -1):
        target.set_value(base + sign * eps * direction)
        values.append(float(loss()))
    target.set_value(base)
    numerical = (values[0] - values[1]) / (2 * eps)
    assert abs(numerical - float((grads[False] * direction).sum())) < 1e-6 * max(1.0, abs(numerical))
    assert abs(numerical - float((grads[True] * direction).sum())) > 1e-6


# ---- initialisation ------------------------------------------------------------------------------
def _net(init):
    _, net, _ = _modules()
    max_idxs = [[3, 2, 855, 5, 7, 2, 1], [124, 82, 12, 20000, 5000, 1000, 1000], [78, 137, 14, 39, 32, 3]]
    schema = lookalike.schema(Config({"hyper_parameters": {"max_idxs": max_idxs, "embed_dim": 64}}, "t.yaml"))
    paddle.seed(3)
    return net.MetaHeacLayer(schema, lookalike.STATIC + lookalike.DYNAMIC, lookalike.AD, [64, 64], 8, 5, init=init)


def test_official_init_is_torchs_default():
    """init 'official' = the official PyTorch code's torch defaults: nn.Embedding rows N(0, 1);
    nn.Linear weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (std bound / sqrt(3))."""
    model = _net("official")
    table = model.embedding.weight.numpy()
    assert abs(table.mean()) < 0.01 and abs(table.std() - 1.0) < 0.01
    kw1 = table[model.embedding.num_rows - 20001 - 5001 - 1001 - 1001 - 79 - 138 - 15 - 40 - 33 - 4:][:100]
    assert abs(kw1.std() - 1.0) < 0.05  # small and huge tables alike
    linears = [(n, p.numpy()) for n, p in model.named_parameters() if n != "embedding.table.weight"]
    assert len(linears) == 2 * (2 + 2 + 1 + 2)  # experts: one stacked [E, in, out] weight per layer
    weights = dict(linears)
    for name, value in linears:
        if "weight" in name:
            fan_in = value.shape[-2]  # paddle Linear weight: [in, out]; ExpertBank: [E, in, out]
        else:
            fan_in = weights[name.replace("bias", "weight")].shape[-2]
        bound = 1.0 / math.sqrt(fan_in)
        assert np.abs(value).max() <= bound, name
        if value.size >= 512:
            assert abs(value.std() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3), name
        if name.endswith("bias"):
            assert np.abs(value).max() > 0, name  # torch biases are not zero


def test_paddlerec_init_is_the_former_one():
    """init 'paddlerec': each table Xavier-uniform with its own shape; Linear N(0, 1/sqrt(fan_in)), bias 0."""
    model = _net("paddlerec")
    table = model.embedding.weight.numpy()
    lbs = table[3 + 1 + 2 + 1:3 + 1 + 2 + 1 + 856]  # carrier (4 rows), consumptionAbility (3), then LBS
    bound = math.sqrt(6.0 / (856 + 64))
    assert np.abs(lbs).max() <= bound and np.abs(lbs).max() > 0.95 * bound
    assert np.abs(table).max() <= math.sqrt(6.0 / (2 + 64))  # the biggest bound: house (2 rows)
    weight = model.experts.weight_0.numpy()[0]  # expert 0, first layer: [in, out]
    assert abs(weight.std() - 1.0 / math.sqrt(weight.shape[0])) < 0.05 / math.sqrt(weight.shape[0])
    assert not np.any(model.experts.bias_0.numpy())


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init 'xavier' unknown"):
        _net("xavier")


# ---- readers -----------------------------------------------------------------------------------
def _sampler(files, config):
    """The task sampler over the Look-alike rows of ``files``, as the trainer builds it."""
    return meta_model.TaskSampler(lookalike.RecDataset(files, config), config)


def _write_npz(path, columns):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **columns)


def test_sampler_is_deterministic_and_handles_small_tasks(tmp_path):
    config, _ = _config("hyper_parameters.batch_size=16")
    rng = np.random.default_rng(0)
    small = _random_rows(rng, 5, max_idxs=config.get("hyper_parameters.max_idxs"), aid=7)
    bigs = [_random_rows(rng, 20, max_idxs=config.get("hyper_parameters.max_idxs"), aid=8 + i) for i in range(5)]
    _write_npz(str(tmp_path / "train.npz"), {k: np.concatenate([small[k]] + [b[k] for b in bigs]) for k in small})
    config.set("runner.data_cache_dir", str(tmp_path / "cache"))
    dataset = _sampler([str(tmp_path / "train.npz")], config)
    assert dataset.small_tasks == 1 and len(dataset) == math.ceil(105 / 16)
    items = [dataset[i] for i in range(len(dataset))]
    again = [dataset[i] for i in reversed(range(len(dataset)))][::-1]
    for a, b in zip(items, again):
        for half in ("support", "query"):
            for name, value in a[half].items():
                np.testing.assert_array_equal(value, b[half][name])
    support = items[0]["support"]
    assert support["interest1"].shape == (5, 16, 10) and support["label"].shape == (5, 16)
    assert support["kw1_length"].shape == (5, 16) and support["aid"].shape == (5, 16)
    for t in range(5):  # support rows of a task all belong to one task, with its own rows
        assert len(set(support["aid"][t].tolist())) == 1
    assert sum(int(i["replaced"]) for i in items) > 0  # the 5-row task was drawn, with replacement


def _task_rows(tmp_path, config, sizes):
    """A training file with one task (aid 100 + i) of sizes[i] rows each -> its path."""
    rng = np.random.default_rng(0)
    parts = [_random_rows(rng, n, max_idxs=config.get("hyper_parameters.max_idxs"), aid=100 + i)
             for i, n in enumerate(sizes)]
    path = str(tmp_path / "train.npz")
    _write_npz(path, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    config.set("runner.data_cache_dir", str(tmp_path / "cache"))
    return path


def test_meta_batch_tasks_are_distinct_and_size_weighted(tmp_path):
    """As the official code (np.random.choice(aids, task_count, replace=False, p=rows/total)):
    the tasks of a meta-batch are distinct, drawn successively with probability proportional to
    their rows among those not drawn yet."""
    config, _ = _config("hyper_parameters.batch_size=4", "hyper_parameters.task_count=3")
    sizes = [200, 100, 40, 20, 20, 20]
    dataset = _sampler([_task_rows(tmp_path, config, sizes)], config)
    firsts, counts = [], np.zeros(len(sizes))
    for epoch in range(25):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            aids = [int(a[0]) for a in dataset[i]["support"]["aid"]]
            assert len(set(aids)) == 3, aids  # distinct tasks
            for t in range(3):  # support and query of a task come from that task
                assert set(dataset[i]["query"]["aid"][t].tolist()) == {aids[t]}
            firsts.append(aids[0] - 100)
            counts[[a - 100 for a in aids]] += 1
    # the first draw follows rows / total; later draws renormalise over the rest
    first = np.bincount(firsts, minlength=len(sizes)) / len(firsts)
    np.testing.assert_allclose(first, np.array(sizes) / sum(sizes), atol=0.05)
    assert counts[0] < len(firsts)  # the biggest task is not in every batch ...
    assert counts[0] > counts[1] > counts[2] > counts[3]  # ... but draws still favour big tasks


def test_fewer_tasks_than_task_count_draws_with_replacement(tmp_path, capsys):
    config, _ = _config("hyper_parameters.batch_size=4", "hyper_parameters.task_count=5")
    dataset = _sampler([_task_rows(tmp_path, config, [10, 10, 10])], config)
    assert not dataset.distinct_tasks and "drawn with replacement" in capsys.readouterr().out
    assert dataset[0]["support"]["aid"].shape == (5, 4)


def test_reader_accepts_published_pickle(shared_data, tmp_path):
    path = os.path.join(shared_data, "tencent-lookalike-metaheac", "paddlerec", "train_stage1.pkl")
    if not os.path.isfile(path):
        pytest.skip("PaddleRec's sample pickle is not present")
    full = read_config(os.path.join(FOLDER, "config_bigdata.yaml")).get("hyper_parameters.max_idxs")
    config, _ = _config(f"runner.data_cache_dir={tmp_path}")
    config.set("hyper_parameters.max_idxs", full)
    dataset = _sampler([path], config)
    frame = pd.read_pickle(path)
    rows = dataset.rows.take(np.arange(len(frame)))
    assert len(dataset.rows) == len(frame)
    np.testing.assert_array_equal(rows["interest1"], np.stack(frame["interest1"].to_numpy()))
    np.testing.assert_array_equal(rows["kw2_length"], frame["kw2_length"].to_numpy())
    np.testing.assert_array_equal(rows["productId"], frame["productId"].to_numpy())
    assert set(dataset[0]) == {"support", "query", "replaced"}


def test_reader_rejects_ids_beyond_max_idxs(tmp_path):
    config, _ = _config(f"runner.data_cache_dir={tmp_path / 'cache'}")
    cols = _random_rows(np.random.default_rng(0), 4, max_idxs=config.get("hyper_parameters.max_idxs"))
    cols["kw1"][2, 0] = 10 ** 6
    _write_npz(str(tmp_path / "x.npz"), cols)
    with pytest.raises(DataFormatError, match=r"x.npz, row 2: kw1 has value 1000000 outside \[0, 2000\]"):
        _sampler([str(tmp_path / "x.npz")], config)


@pytest.mark.parametrize("damage", ["empty", "truncated", "zero_rows"])
def test_bad_npz_names_the_file(tmp_path, damage):
    config, _ = _config(f"runner.data_cache_dir={tmp_path / 'cache'}")
    good = _random_rows(np.random.default_rng(0), 40, max_idxs=config.get("hyper_parameters.max_idxs"))
    _write_npz(str(tmp_path / "a.npz"), good)
    path = tmp_path / "b.npz"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        _write_npz(str(path), good)
        path.write_bytes(path.read_bytes()[:500])
    else:
        _write_npz(str(path), {k: v[:0] for k, v in good.items()})
        assert len(_sampler([str(tmp_path / "a.npz"), str(path)], config).rows) == 40  # 0 rows is fine
        return
    with pytest.raises(DataFormatError, match=f"{path}: not a readable .npz file"):
        _sampler([str(tmp_path / "a.npz"), str(path)], config)


# ---- infer_meta protocol -----------------------------------------------------------------------
def _evaluator(config, dm):
    paddle.seed(1)
    model = dm.create_model(config)
    hot = os.path.join(FOLDER, "data", "test_hot")
    dataset = meta_model.TestTasks(lookalike.RecDataset, hot, config, "runner.test_hot_data_dir")
    return meta_model, meta_model.TaskEvaluator(model, dm, config), dataset, model


def test_task_order_does_not_change_results():
    config, dm = _config("runner.infer_train_epoch=1")
    _, evaluator, dataset, model = _evaluator(config, dm)
    a, b = dataset.tasks[0], dataset.tasks[1]
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    forward = [evaluator.finetune_and_predict(t) for t in (a, b)]
    backward = [evaluator.finetune_and_predict(t) for t in (b, a)][::-1]
    for x, y in zip(forward, backward):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    evaluator.restore()
    for name, p in model.named_parameters():  # meta-trained weights intact (table never written)
        np.testing.assert_array_equal(p.numpy(), before[name])
    assert not np.allclose(forward[0], evaluator.predict_without_finetune(a))


def test_finetune_on_seed_rows_equals_dense_finetune():
    """TaskEvaluator adapts a copy of the seed rows' table rows only; the plain way - Adam over
    every parameter, the whole table with a dense gradient - gives the same candidate scores."""
    config, dm = _config("runner.infer_train_epoch=2", "hyper_parameters.batch_size=16")
    _, evaluator, dataset, model = _evaluator(config, dm)
    task = dataset.tasks[0]
    fast = evaluator.finetune_and_predict(task)
    evaluator.restore()
    # The plain loop on a copy of the model, with the evaluator's batch order.
    hp = lambda k: config.get(f"hyper_parameters.{k}")
    reference = _modules()[1].MetaHeacLayer(lookalike.schema(config), lookalike.STATIC + lookalike.DYNAMIC, lookalike.AD,
                                            hp("mlp_dims"), hp("num_expert"), hp("num_output"),
                                            sparse=False)  # dense table gradient
    reference.set_state_dict(model.state_dict())
    optimizer = paddle.optimizer.Adam(learning_rate=evaluator.lr, parameters=reference.parameters())
    rng = np.random.default_rng([evaluator.seed, task.aid])
    reference.train()
    for _ in range(evaluator.epochs):
        order = rng.permutation(len(task.stage1["label"]))
        for i in range(0, len(order), evaluator.batch_size):
            batch = {k: paddle.to_tensor(v[order[i:i + evaluator.batch_size]]) for k, v in task.stage1.items()}
            dm.create_loss(reference(batch), batch["label"]).backward()
            optimizer.step()
            optimizer.clear_grad()
    reference.eval()
    with paddle.no_grad():
        plain = reference({k: paddle.to_tensor(v) for k, v in task.stage2.items()}).numpy()
    assert not np.allclose(fast, evaluator.predict_without_finetune(task), atol=1e-4)  # fine-tuning matters
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-6)


def test_single_label_task_is_skipped_not_zero():
    config, dm = _config("runner.infer_train_epoch=1")
    infer_meta, evaluator, dataset, _ = _evaluator(config, dm)
    one_label = dataset.tasks[0]
    one_label.stage2["label"][:] = 0
    dataset.tasks = dataset.tasks[:3]
    logs = []
    frame, summary = infer_meta.evaluate_set(evaluator, dataset, "hot", logs.append)
    assert summary["skipped_tasks"] == 1 and summary["gauc_tasks"] == 2
    assert summary["skipped_aids"] == [one_label.aid]
    assert math.isnan(frame["auc"].iloc[0]) and "skipped" in logs[0]
    assert summary["gauc"] == pytest.approx(frame["auc"].iloc[1:].mean())


# ---- the two commands end to end -----------------------------------------------------------------
def test_train_and_infer_meta_end_to_end(tmp_path):
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "infer")
    train = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={ckpt}", cwd=str(tmp_path))
    assert train.returncode == 0, train.stdout + train.stderr
    assert "replaced_draws" in train.stdout
    args = ["-m", os.path.relpath(CONFIG, str(tmp_path)), "-o", f"runner.model_save_path={ckpt}",
            f"runner.infer_load_path={ckpt}", f"runner.infer_output_path={out}"]
    first = run_tool("models/multitask/metaheac/infer_meta.py", *args, cwd=str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    head = metrics["headline"]
    assert head["auc_hot"] > 0.65 and head["auc_cold"] > 0.6
    assert head["gauc_hot"] > head["gauc_hot_no_finetune"]
    tasks = pd.read_csv(os.path.join(out, "tasks_epoch0.csv"))
    assert len(tasks) == 12 and set(tasks["set"]) == {"hot", "cold"}
    shutil.move(out, out + "1")
    second = run_tool("models/multitask/metaheac/infer_meta.py", *args, cwd=str(tmp_path))
    assert second.returncode == 0, second.stdout + second.stderr
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["headline"] == head
    shutil.move(out, out + "2")
    # infer_meta.py is tools/infer.py, which evaluates a meta-learned model by fine-tune-then-test
    third = run_tool("tools/infer.py", *args, cwd=str(tmp_path))
    assert third.returncode == 0, third.stdout + third.stderr
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["headline"] == head


def test_headline_is_the_mean_over_seeds_and_the_last_epoch_otherwise():
    """tools/infer.py --seeds N: the headline is the seeds' mean, not the last seed's figures."""
    evaluation = object.__new__(meta_model.FinetuneEvaluation)
    evaluation.dm, evaluation.log = object(), lambda message: None

    def result(auc):
        return {"hot": {"auc": auc, "gauc": auc - 0.1, "no_finetune": {"auc": auc - 0.2, "gauc": auc - 0.3}}}

    seeds = evaluation.finish({"seed1": result(0.6), "seed2": result(0.8)}, None)
    assert seeds == pytest.approx({"auc_hot": 0.7, "gauc_hot": 0.6, "auc_hot_no_finetune": 0.5,
                                   "gauc_hot_no_finetune": 0.4})
    assert evaluation.finish({"epoch0": result(0.6), "epoch1": result(0.8)}, None)["auc_hot"] == 0.8

"""Pretrained-vector two-tower model: rows of numbers (text and .npy) through the cache, the
MovieLens vector builder, scores, and a whole train run with early stopping on the sample."""
import json
import os
import sys

import numpy as np
import paddle
import pandas as pd
import pytest

from models.common.data import CachedDataset, DataFormatError, NumberRowsParser
from models.common.features import DenseFeature, Label, Schema
from datasets.movielens import make_pretrained_vectors as mpv
from tests.conftest import REPO, run_tool
from models.common.loading import load_module

FOLDER = os.path.join(REPO, "models", "recall", "pretrained_dssm")
CONFIG = os.path.join(FOLDER, "config.yaml")
PretrainedTwoTower = load_module(os.path.join(FOLDER, "net.py")).PretrainedTwoTower

SCHEMA = Schema([Label("label"), DenseFeature("user_vector", 2), DenseFeature("item_vector", 2)])


class _Config:
    def __init__(self, **values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


def read(tmp_path, text=None, array=None, skip=False):
    folder = tmp_path / "d"
    folder.mkdir(exist_ok=True)
    path = folder / ("rows.npy" if array is not None else "rows.txt")
    if array is not None:
        np.save(path, array)
    else:
        path.write_text(text)
    dataset = CachedDataset([str(path)], _Config(**{"runner.skip_bad_lines": skip}), SCHEMA, NumberRowsParser())
    return dataset, str(path)


def test_text_and_npy_rows_read_the_same(tmp_path):
    rows = np.array([[1, 0.5, -1, 2, 3], [0, 1e-3, 4, 5.5, -6]], dtype=np.float32)
    text, _ = read(tmp_path, "1,0.5,-1,2,3\r\n\n0, 0.001,4,5.5,-6\n")
    npy, _ = read(tmp_path, array=rows)
    for dataset in (text, npy):
        batch = dataset.take([0, 1])
        assert batch["label"].tolist() == [1, 0]
        np.testing.assert_allclose(batch["user_vector"], rows[:, 1:3])
        np.testing.assert_allclose(batch["item_vector"], rows[:, 3:5])


@pytest.mark.parametrize("line, message", [
    ("1,0.5,-1,2", "line 2: expected 5 comma-separated values, found 4"),
    ("1,0.5,-1,2,3,4", "line 2: expected 5 comma-separated values, found 6"),
    ("1,0.5,abc,2,3", "line 2: column 'user_vector[1]' has value 'abc', expected a number"),
    ("1,0.5,,2,3", "line 2: column 'user_vector[1]' has value '', expected a number"),
    ("1,0.5,nan,2,3", "line 2: user_vector has value nan, expected a finite number"),
    ("1,0.5,1,inf,3", "line 2: item_vector has value inf, expected a finite number"),
    ("2,0.5,1,2,3", "line 2: label label has value 2, expected one of [0, 1]"),
])
def test_bad_row_names_file_and_line(tmp_path, line, message):
    with pytest.raises(DataFormatError) as error:
        read(tmp_path, f"0,1,2,3,4\n{line}\n1,1,1,1,1\n")
    assert "rows.txt" in str(error.value) and message in str(error.value)
    dataset, _ = read(tmp_path, f"0,1,2,3,4\n{line}\n1,1,1,1,1\n", skip=True)
    assert len(dataset) == 2 and dataset.skipped_lines == 1
    assert dataset.take([1])["label"].tolist() == [1]


def test_bad_npy_shard(tmp_path):
    with pytest.raises(DataFormatError, match="expected a 2-D numeric array with 5 columns"):
        read(tmp_path, array=np.zeros((3, 4), np.float32))
    with pytest.raises(DataFormatError, match="row 2: label label has value 3"):
        read(tmp_path, array=np.array([[0, 1, 2, 3, 4], [3, 1, 2, 3, 4]], np.float32))


def test_vectors_hold_out_the_last_items_and_leave_the_own_item_out(tmp_path):
    ratings = pd.DataFrame({"user_id": [1, 1, 1, 1, 2, 2], "item_id": [10, 20, 30, 40, 10, 30],
                            "timestamp": [4, 1, 2, 3, 1, 2]})
    train, valid, test = mpv.split_by_time(ratings)
    assert train.values.tolist() == [[1, 20], [1, 30], [2, 10], [2, 30]]  # user 2 has < 3 interactions
    assert valid.values.tolist() == [[1, 40]] and test.values.tolist() == [[1, 10]]
    item_vec = np.array([[1, 0], [0, 1], [1, 1], [2, 2], [3, 0]], np.float32)  # items 10, 20, 30, 40, 50
    mpv.write_dataset(str(tmp_path), train, valid, test, [1, 2], [10, 20, 30, 40, 50], item_vec, 1, 0, "npy")
    users = np.load(tmp_path / "vectors" / "users.npy")
    np.testing.assert_allclose(users, [[0.5, 1.0], [1.0, 0.5]])  # means of the training items only
    rows = np.load(tmp_path / "train" / "part-0.npy")
    positives = rows[rows[:, 0] == 1]
    # user 1's positive item 20 ([0, 1]) is seen with the mean of its other item (30: [1, 1]), etc.
    pairs = {tuple(r[3:]): tuple(r[1:3]) for r in positives}
    assert pairs[(0.0, 1.0)] == (1.0, 1.0) and pairs[(1.0, 1.0)] in {(0.0, 1.0), (1.0, 0.0)}
    negatives = rows[rows[:, 0] == 0]
    assert len(negatives) == len(positives)
    # negatives are never items the user interacted with (user 1: only 50; user 2: 20, 40 or 50)
    for r in negatives:
        allowed = {(3.0, 0.0)} if tuple(r[1:3]) == (0.5, 1.0) else {(0.0, 1.0), (2.0, 2.0), (3.0, 0.0)}
        assert tuple(r[3:]) in allowed


def test_vectors_from_complete_ml100k(shared_data, tmp_path):
    from datasets.movielens import raw

    ratings, _, _ = raw.load(os.path.join(shared_data, "ml-100k"))
    train, valid, test = mpv.split_by_time(ratings)
    assert (len(train), len(valid), len(test)) == (98114, 943, 943)
    vectors = mpv.ppmi_svd_vectors(train, np.arange(1, 1683), 32)
    # items that co-occur more are closer: an item's nearest neighbours share its users
    norms = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    assert np.isfinite(vectors).all() and (np.linalg.norm(vectors, axis=1) > 0).mean() > 0.95
    assert (norms[:50] @ norms.T).argsort(axis=1)[:, -2].tolist() != list(range(50))


@pytest.mark.parametrize("score", ["product", "dot", "cosine"])
def test_score_is_a_function_of_query_key_inner_product(score):
    paddle.seed(0)
    model = PretrainedTwoTower(6, [5], score=score, temperature=0.5)
    users, items = paddle.randn([4, 6]), paddle.randn([4, 6])
    u, i = model.user_tower(users), model.item_tower(items)
    expected = paddle.nn.functional.sigmoid(model.logit_of(paddle.sum(model.query(u) * model.key(i), axis=-1)))
    got = model({"user_vector": users, "item_vector": items})
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)
    if score == "product":  # w . (u * i) + b
        manual = (u * i).numpy() @ model.output.weight.numpy()[:, 0] + model.output.bias.numpy()
        np.testing.assert_allclose(got.numpy(), 1 / (1 + np.exp(-manual)), rtol=1e-5)
    if score == "cosine":
        cos = (u * i).sum(-1) / (paddle.linalg.norm(u, axis=-1) * paddle.linalg.norm(i, axis=-1))
        np.testing.assert_allclose(got.numpy(), 1 / (1 + np.exp(-cos.numpy() / 0.5)), rtol=1e-5)


def test_trains_on_the_sample_with_early_stopping(tmp_path):
    out = tmp_path / "ckpt"
    result = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={out}")
    assert result.returncode == 0, result.stderr
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    history, best = metrics["train"], metrics["early_stopping"]["best_epoch"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[best]["valid_auc"] > 0.7  # the sample's hidden taste is learnable
    assert len(history) < 30 and os.path.isdir(out / "best")  # stopped early
    result = run_tool("tools/infer.py", "-m", CONFIG, "-o", f"runner.model_save_path={out}")
    assert result.returncode == 0, result.stderr
    assert f"evaluating epoch(s) [{best}]" in result.stdout
    with open(out / "infer" / "metrics.json") as f:
        assert abs(json.load(f)["headline"]["auc"] - history[best]["valid_auc"]) < 1e-9  # same data, same code


def train_sample(tmp_path, *overrides):
    out = tmp_path / "ckpt"
    result = run_tool("tools/trainer.py", "-m", CONFIG, "-o", f"runner.model_save_path={out}", "runner.epochs=3",
                      *overrides)
    assert result.returncode == 0, result.stderr
    return out


def test_export_reproduces_the_scores_and_the_inference_towers_match(tmp_path):
    out = train_sample(tmp_path)
    vectors, export_dir = os.path.join(FOLDER, "data", "vectors"), tmp_path / "export"
    result = run_tool(os.path.join("models", "recall", "pretrained_dssm", "export.py"), "-m", CONFIG,
                      "-o", f"runner.model_save_path={out}", "--vectors", vectors, "--out", str(export_dir))
    assert result.returncode == 0, result.stderr
    user_ids = np.loadtxt(export_dir / "users.txt", dtype=np.int64)
    item_ids = np.loadtxt(export_dir / "items.txt", dtype=np.int64)
    assert user_ids.tolist() == list(range(1, 201)) and item_ids.tolist() == list(range(1, 101))
    users, items = np.load(os.path.join(vectors, "users.npy")), np.load(os.path.join(vectors, "items.npy"))
    # the model's scores for (user, item) pairs from the checkpoint = sigmoid(<query, key> + b)
    from tools.utils.checkpoint import load_checkpoint

    model = PretrainedTwoTower(8, [64])
    with open(out / "metrics.json") as f:
        load_checkpoint(str(out), json.load(f)["early_stopping"]["best_epoch"], model)
    model.eval()
    u, i = np.repeat(np.arange(200), 3), np.tile([0, 50, 99], 200)
    scores = model({"user_vector": paddle.to_tensor(users[u]), "item_vector": paddle.to_tensor(items[i])}).numpy()
    queries, keys = np.load(export_dir / "user_queries.npy"), np.load(export_dir / "item_keys.npy")
    logits = (queries[u] * keys[i]).sum(axis=1) + model.output.bias.numpy()
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    # the inference graphs (a Paddle Inference predictor, no repository network code) give the search vectors
    from models.common.export import Graph

    with open(export_dir / "manifest.json") as f:
        graphs = json.load(f)["serving"]["graphs"]
    for side, name, column, saved in (("users", "user_tower", "user_vector", queries), ("items", "item_tower", "item_vector", keys)):
        source = users if side == "users" else items
        got = Graph(str(export_dir), graphs[name]).run({column: source})
        np.testing.assert_allclose(next(iter(got.values())), saved, rtol=1e-5, atol=1e-6)


def test_retrieval_beats_most_popular_on_the_sample(tmp_path):
    out = train_sample(tmp_path, "runner.epochs=10")
    data, export_dir = os.path.join(FOLDER, "data"), tmp_path / "export"
    result = run_tool(os.path.join("models", "recall", "pretrained_dssm", "export.py"), "-m", CONFIG,
                      "-o", f"runner.model_save_path={out}", "--vectors", os.path.join(data, "vectors"),
                      "--out", str(export_dir))
    assert result.returncode == 0, result.stderr
    result = run_tool(os.path.join("models", "recall", "pretrained_dssm", "retrieve.py"), "--export", str(export_dir),
                      "--test", os.path.join(data, "interactions", "test.csv"),
                      "--train", os.path.join(data, "interactions", "train.csv"), "--index", "hnsw")
    assert result.returncode == 0, result.stderr
    with open(export_dir / "retrieval_metrics.json") as f:
        metrics = json.load(f)["metrics"]
    assert metrics["hit@10"] > metrics["popular_hit@10"] and metrics["hit@50"] > metrics["popular_hit@50"]
    assert metrics["hnsw_recall_vs_exact@10"] > 0.95
    result = run_tool(os.path.join("models", "recall", "pretrained_dssm", "retrieve.py"), "--export", str(export_dir),
                      "--users", "3,7", "--top-n", "4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("user 3: ") and len(lines[1].split()) == 2 + 4


def peak_rss_anon_mb(command):
    """Run ``command``; -> its peak anonymous resident memory (RssAnon, sampled every 20 ms), MB."""
    import subprocess
    import time

    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONWARNINGS="ignore"))
    peak = 0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
            peak = max(peak, kb)
        except (OSError, StopIteration):
            pass
        time.sleep(0.02)
    assert process.returncode == 0, process.stderr.read()
    return peak / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc/<pid>/status")
def test_training_memory_does_not_grow_with_the_file(tmp_path):
    """20k vs 200k rows of 128-d pairs (21 vs 206 MB as .npy): peak RssAnon within 1.2x, conversion
    included. A reader holding the rows in memory would add the whole file to the larger run."""
    rng = np.random.default_rng(0)
    block = np.column_stack([rng.integers(0, 2, 20000), rng.normal(size=(20000, 256))]).astype(np.float32)
    peaks = {}
    for rows in (20000, 200000):
        folder = tmp_path / str(rows)
        folder.mkdir()
        array = np.lib.format.open_memmap(folder / "part-0.npy", mode="w+", dtype=np.float32, shape=(rows, 257))
        for start in range(0, rows, len(block)):
            array[start:start + len(block)] = block
        array.flush()
        del array
        peaks[rows] = peak_rss_anon_mb([
            sys.executable, "tools/trainer.py", "-m", os.path.join(FOLDER, "config_bigdata.yaml"), "-o",
            f"runner.train_data_dir={folder}", f"runner.model_save_path={tmp_path / ('ckpt' + str(rows))}",
            "runner.epochs=1", "runner.valid_data_dir=", "runner.early_stop_patience=0"])
    assert peaks[200000] < 1.2 * peaks[20000], peaks


def test_sample_is_what_make_sample_writes(tmp_path):
    load_module(os.path.join(FOLDER, "data", "make_sample.py")).main(str(tmp_path))
    assert not list(tmp_path.rglob("manifest.json")) and not list(tmp_path.rglob(".*"))  # as shipped
    for part in ("train/part-0.txt", "valid/part-0.txt", "vectors/users.npy", "vectors/items.npy",
                 "interactions/test.csv"):
        with open(tmp_path / part, "rb") as ours, open(os.path.join(FOLDER, "data", part), "rb") as shipped:
            assert ours.read() == shipped.read(), part


def test_hnsw_finds_the_inner_product_neighbours_of_keys_with_unequal_norms():
    from models.common.retrieval import search

    rng = np.random.default_rng(0)
    keys = rng.normal(size=(3000, 16)) * rng.uniform(0.1, 3.0, size=(3000, 1))  # norms differ widely
    queries = rng.normal(size=(200, 16))
    exact, _ = search(keys, queries, 10, "flat")
    approx, _ = search(keys, queries, 10, "hnsw")
    assert np.array_equal(exact[:, 0], np.argmax(queries @ keys.T, axis=1))
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.95, recall


def test_movielens_run_sh_builds_the_vectors_step(tmp_path):
    """datasets/movielens/run.sh --raw runs make_pretrained_vectors.py into OUT/pretrained (and
    --steps picks steps; an unknown step is refused)."""
    import subprocess

    raw_dir = load_module(os.path.join(REPO, "datasets", "movielens", "sample", "make_sample.py")).write_raw(
        str(tmp_path / "raw"))
    run = lambda *a: subprocess.run(["bash", os.path.join(REPO, "datasets", "movielens", "run.sh"), *a],  # noqa: E731
                                    capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
    out = tmp_path / "out"
    result = run("--raw", raw_dir, "--out", str(out), "--steps", "pretrained")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["pretrained"]
    rows = np.load(out / "pretrained" / "train" / "part-0.npy")
    assert rows.shape[1] == 1 + 2 * 128 and set(np.unique(rows[:, 0])) == {0.0, 1.0}
    result = run("--raw", raw_dir, "--out", str(out), "--steps", "nonsense")
    assert result.returncode == 2 and "unknown step nonsense" in result.stderr
    # its folder and data folders: manifests with one id space; a second run is refused, untouched
    space = check_pretrained(out / "pretrained")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run("--raw", raw_dir, "--out", str(out), "--steps", "pretrained")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"run.sh: {out / 'pretrained'} already holds files; choose another --out, or --replace to replace them"]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    result = run("--raw", raw_dir, "--out", str(out), "--steps", "pretrained", "--replace")
    assert result.returncode == 0, result.stderr
    assert check_pretrained(out / "pretrained") == space  # the same input: the same id space, the same rows
    assert (out / "pretrained" / "train" / "part-0.npy").read_bytes() == before[out / "pretrained" / "train" / "part-0.npy"]
    assert sorted(os.listdir(out)) == ["pretrained"]


def check_pretrained(folder, ext="npy"):
    """make_pretrained_vectors.py's folder: its manifest and each data folder's, one id space, the rows."""
    from models.common.artifacts import read_manifest
    from models.common.data.cache import list_data_files

    folders = {"train": [f"part-0.{ext}"], "valid": [f"part-0.{ext}"],
               "vectors": ["items.npy", "items.txt", "users.npy", "users.txt"],
               "interactions": ["test.csv", "train.csv", "valid.csv"]}
    top = read_manifest(str(folder))
    space = top["fingerprints"]["id_space"]
    assert top["data_set"] == "movielens" and set(top["files"]) == {f"{d}/{f}" for d, files in folders.items() for f in files}
    for sub, files in folders.items():
        manifest = read_manifest(str(folder / sub))
        assert manifest["fingerprints"] == {"id_space": space} and sorted(manifest["files"]) == files
        assert list_data_files(str(folder / sub), sub) == [str(folder / sub / f) for f in files]
        for name, info in manifest["files"].items():
            path = folder / sub / name
            rows = (len(np.load(path)) if name.endswith(".npy") else
                    len(path.read_text().splitlines()) - name.endswith(".csv"))  # a csv has a header line
            assert info["rows"] == rows and top["files"][f"{sub}/{name}"] == info
    return space


def test_pretrained_vectors_id_space_and_replace(tmp_path, capsys):
    raw_dir = load_module(os.path.join(REPO, "datasets", "movielens", "sample", "make_sample.py")).write_raw(
        str(tmp_path / "raw"))
    out = tmp_path / "out"
    mpv.main(["--raw", raw_dir, "--out", str(out), "--dim", "8", "--format", "text"])
    space = check_pretrained(out, "txt")
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        mpv.main(["--raw", raw_dir, "--out", str(out), "--dim", "4", "--format", "text"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and str(out) in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    mpv.main(["--raw", raw_dir, "--out", str(out), "--dim", "4", "--format", "text", "--replace"])
    assert check_pretrained(out, "txt") != space  # other vectors: another id space in every manifest
    assert np.loadtxt(out / "train" / "part-0.txt", delimiter=",").shape[1] == 1 + 2 * 4
    assert sorted(os.listdir(tmp_path)) == ["out", "raw"]

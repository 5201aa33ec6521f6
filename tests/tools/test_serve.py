"""tools/serve.py for real: exports of a trained DSSM and DeepFM served by a subprocess on a free
loopback port, queried over HTTP. /recall gives tools/infer.py's exact top-K, /rank the dygraph
model's scores; every bad request gets its 4xx and the service goes on; a restarted service gives
the same answers; a half-written or foreign export stops the start with one line."""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import REPO
from models.common.data.loader import create_dataset
from models.common.export import as_arrays
from models.common.loading import load_reader
from models.common.retrieval import search
from tools.export import main as export_main
from tools.infer import infer
from tools.serve import ServiceProcess
from tools.trainer import train
from tools.utils.checkpoint import load_checkpoint
from tools.utils.runtime import parse_args, setup

DSSM = os.path.join(REPO, "models", "recall", "dssm", "config.yaml")
DEEPFM = os.path.join(REPO, "models", "rank", "deepfm", "config.yaml")


def model_args(config, folder):
    return ["-m", config, "-o", f"runner.model_save_path={folder / 'ckpt'}", f"runner.data_cache_dir={folder / 'cache'}",
            "runner.epochs=1", "runner.print_interval=100000", f"runner.infer_load_path={folder / 'ckpt'}",
            "runner.infer_start_epoch=0", "runner.infer_end_epoch=1", f"runner.infer_output_path={folder / 'infer'}"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{name: (ctx, export folder)} of DSSM and DeepFM trained one epoch on their samples."""
    done = {}
    for name, config in (("dssm", DSSM), ("deepfm", DEEPFM)):
        folder = tmp_path_factory.mktemp(name)
        args = model_args(config, folder)
        train(setup(parse_args("test", args), distributed=False))
        export_main([*args, "--out", str(folder / "export")])
        done[name] = (setup(parse_args("test", args), distributed=False), folder)
    return done


def start_refused(*args):
    done = subprocess.run([sys.executable, os.path.join(REPO, "tools", "serve.py"), "--port", "0", *args],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def service(exports):
    running = ServiceProcess("--export", str(exports["dssm"][1] / "export"), str(exports["deepfm"][1] / "export"))
    yield running
    running.stop()


def test_recall_gives_infers_exact_top_k(exports, service):
    ctx, folder = exports["dssm"]
    infer(ctx)
    embeddings = glob.glob(str(folder / "infer" / "embeddings_*"))[0]
    user_emb, item_emb = np.load(f"{embeddings}/user_emb.npy"), np.load(f"{embeddings}/item_emb.npy")
    item_ids, user_ids = np.load(f"{embeddings}/item_ids.npy"), np.load(f"{embeddings}/user_ids.npy")
    rows, _ = search(item_emb, user_emb, 10)
    test = create_dataset(load_reader(ctx.config, "infer"), ctx.config, "infer")
    status, schema = service.call("GET", "/schema")
    features = schema["dssm"]["graphs"]["user_tower"]["features"]
    for r in range(0, len(test), max(1, len(test) // 25)):
        row = test.take([r])
        user = {n: (row[n][0, :int(row[f"{n}_length"][0])].tolist() if features[n]["kind"] == "sequence"
                    else int(row[n][0])) for n in features}
        assert user["user_id"] == user_ids[r]
        status, answer = service.call("POST", "/recall", {"model": "dssm", "user": user, "k": 10})
        assert status == 200, answer
        assert answer["items"] == item_ids[rows[r]].tolist()
        np.testing.assert_allclose(answer["scores"], user_emb[r] @ item_emb[rows[r]].T, atol=1e-5)
        status, fewer = service.call("POST", "/recall", {"user": user, "k": 5, "exclude": answer["items"][:2]})
        assert fewer["items"] == answer["items"][2:7]


def test_rank_gives_the_models_scores(exports, service):
    ctx, folder = exports["deepfm"]
    dm, config = ctx.dygraph_model, ctx.config
    model = dm.create_model(config)
    load_checkpoint(str(folder / "ckpt"), 0, model)
    model.eval()
    test = create_dataset(load_reader(config, "infer"), config, "infer")
    batch = test.take(np.arange(100))
    status, schema = service.call("GET", "/schema")
    inputs = schema["deepfm"]["graphs"]["rank"]["features"]
    rows = [{n: (batch[n][i].tolist() if batch[n].ndim > 1 else (float(batch[n][i]) if inputs[n]["dtype"] == "float32"
                                                                    else int(batch[n][i]))) for n in inputs}
            for i in range(100)]
    status, answer = service.call("POST", "/rank", {"model": "deepfm", "rows": rows})
    assert status == 200, answer
    with paddle.no_grad():
        expected = model({n: paddle.to_tensor(a) for n, a in as_arrays(batch, {n: inputs[n] for n in inputs}).items()})
    np.testing.assert_allclose(answer["scores"]["prob_click"], expected.numpy().reshape(-1), atol=1e-5, rtol=0)


def test_every_bad_request_gets_its_4xx_and_the_service_goes_on(exports, service):
    status, schema = service.call("GET", "/schema")
    user = {"user_id": 3, "gender": 1, "age": 2, "occupation": 3, "zip": 4, "hist": [1, 2, 3]}
    good = ("POST", "/recall", {"model": "dssm", "user": user, "k": 10})
    status, expected = service.call(*good)
    assert status == 200
    vocab = schema["dssm"]["graphs"]["user_tower"]["features"]["user_id"]["vocab_size"]
    items = schema["dssm"]["catalog_items"]
    criteo = {str(i): 1 for i in range(1, 27)}
    assert service.call("POST", "/rank", {"rows": [{**criteo, "dense_feature": [0.5] * 13}]})[0] == 200
    bad = [
        (("POST", "/recall", {"model": "dssm", "user": {k: v for k, v in user.items() if k != "age"}}), 422, "user[0].age: missing"),
        (("POST", "/recall", {"model": "dssm", "user": {**user, "colour": 1}}), 422, "user[0].colour: unknown feature"),
        (("POST", "/recall", {"model": "dssm", "user": {**user, "hist_length": 3}}), 422, "hist_length: unknown feature (derived"),
        (("POST", "/recall", {"model": "dssm", "user": {**user, "gender": "f"}}), 422, "user[0].gender: expected an integer"),
        (("POST", "/recall", {"model": "dssm", "user": {**user, "age": 1.5}}), 422, "user[0].age: expected an integer"),
        (("POST", "/recall", {"model": "dssm", "user": {**user, "user_id": vocab}}), 422, f"user[0].user_id: id {vocab} is outside"),
        (("POST", "/recall", {"model": "dssm", "user": {**user, "hist": [1, -2]}}), 422, "user[0].hist[1]: id -2 is outside"),
        (("POST", "/recall", {"model": "dssm", "user": user, "k": items + 1}), 422, f"k: {items + 1} is outside 1 .. {items}"),
        (("POST", "/recall", {"model": "dssm", "user": user, "k": 0}), 422, "k: 0"),
        (("POST", "/recall", {"model": "nope", "user": user}), 404, "model: no model 'nope'"),
        (("POST", "/rank", {"model": "dssm", "rows": [user]}), 404, "has no rank graph"),
        (("POST", "/rank", {"rows": []}), 422, "rows: expected a non-empty list"),
        (("POST", "/rank", {"rows": [{**criteo, "dense_feature": [0.0] * 12}]}), 422, "rows[0].dense_feature: expected a list of 13"),
        (("POST", "/rank", {"rows": [{**criteo, "dense_feature": [float("nan")] * 13}]}), 422, "dense_feature[0]: expected a finite number"),
        (("POST", "/recall", b"{not json"), 400, "not JSON"),
        (("POST", "/recall", [1, 2]), 400, "JSON object"),
        (("POST", "/nowhere", {}), 404, "/nowhere: no such route"),
        (("GET", "/nowhere", None), 404, "no such route"),
    ]
    for request, status, message in bad:
        got, answer = service.call(*request)
        assert got == status and message in answer["error"], (request, got, answer)
        assert service.call(*good) == (200, expected)


def test_a_killed_and_restarted_service_gives_the_same_answers(exports):
    user = {"user_id": 5, "gender": 0, "age": 1, "occupation": 2, "zip": 3, "hist": [4, 5]}
    requests = [("POST", "/recall", {"user": user, "k": 20, "exclude": [7]}), ("GET", "/schema", None)]
    first = ServiceProcess("--export", str(exports["dssm"][1] / "export"))
    before = [first.call(*r) for r in requests]
    first.stop()  # SIGKILL
    assert first.process.returncode == -9
    again = ServiceProcess("--export", str(exports["dssm"][1] / "export"))
    try:
        assert [again.call(*r) for r in requests] == before and before[0][0] == 200
    finally:
        again.stop()


def test_start_refuses_half_written_and_foreign_exports(exports, tmp_path):
    export = exports["dssm"][1] / "export"
    half = tmp_path / "half"
    shutil.copytree(export, half)
    os.remove(half / "manifest.json")  # what a killed export leaves: files, no manifest
    assert "not a finished export" in start_refused("--export", str(half))
    changed = tmp_path / "changed"
    shutil.copytree(export, changed)
    with open(changed / "catalog" / "ids.npy", "ab") as f:
        f.write(b"\0")
    assert "changed since it was written" in start_refused("--export", str(changed))
    assert "not an export" in start_refused("--export", str(exports["dssm"][1] / "ckpt" / "0")) \
        or "no manifest.json" in start_refused("--export", str(exports["dssm"][1] / "ckpt" / "0"))
    # an export from another DSSM config than the one expected
    assert "exported from another dssm config" in start_refused(
        "--export", str(export), "--expect-config", os.path.join(REPO, "models", "recall", "dssm", "config_bigdata.yaml"))
    assert "two exports named 'dssm'" in start_refused("--export", str(export), str(export))


def test_load_generator_reports_every_point(exports, tmp_path):
    """benchmarks/load_serve.py, tiny: every route and concurrency answered, figures consistent."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from load_serve import main as load_main

    ranker = exports["deepfm"][1] / "export"
    results = load_main(["--rank-export", str(ranker), "--recall-export", str(exports["dssm"][1] / "export"),
                         "--requests", "12", "--concurrency", "1", "3", "--candidates", "20", "--k", "10",
                         "--time-limit", "60", "--out", str(tmp_path / "load.json")])
    for route in ("/rank", "/recall"):
        points = results[route]["http"]
        assert [p["concurrency"] for p in points] == [1, 3]
        for p in points:
            assert p["requests"] == 12 and p["failed"] == 0 and p["qps"] > 0 and p["p99_ms"] >= p["p50_ms"] > 0
        assert results[route]["in_process"]["p50_ms"] > 0
    assert json.load(open(tmp_path / "load.json"))["setup"]["candidates"] == 20

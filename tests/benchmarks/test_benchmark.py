"""benchmarks/benchmark.py: JSON shape and sane values on tiny sizes (no timing assertions), and the
helpers behind it: data synthesis and the PaddleRec-style line-by-line baseline reader."""
import json
import importlib
import mmap
import os
import shutil
import time

import numpy as np
import paddle
import pytest

from models.common.data import list_data_files
from tests.conftest import model_config, DEEPFM_CONFIG, REPO, run_tool
from benchmarks import harness as bm
from benchmarks.baselines import paddlerec_readers as pr

DEEPFM_DIR = os.path.dirname(DEEPFM_CONFIG)
SAMPLE_DIR = os.path.join(DEEPFM_DIR, "data", "train")  # the real Criteo rows: ids in [0, 1000000]
REAL_IDS = "hyper_parameters.sparse_feature_number=1000001"
SMALL_TABLE = "hyper_parameters.sparse_feature_number=100003"  # ids are re-hashed into it while synthesising


def _criteo_module():
    return importlib.import_module("models.common.datasets.criteo")


def _json_result(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]), lines[:-1]


def _check_pipeline(section):
    assert section["ins_per_sec"] > 0
    assert 0.0 <= section["reader_share"] <= 1.0
    assert section["samples"] > 0 and section["seconds"] > 0


def test_benchmark_with_baseline_from_another_cwd(tmp_path):
    out = tmp_path / "result.json"
    proc = run_tool("benchmarks/benchmark.py", "-m", DEEPFM_CONFIG, "--rows", "2000", "--batch-size", "256",
                    "--steps", "3", "--warmup", "1", "--infer-steps", "2", "--baseline", "--out", str(out),
                    "--baseline-opt", "hyper_parameters.optimizer.lazy_mode=true",
                    "-o", SMALL_TABLE, cwd=str(tmp_path))
    result, text = _json_result(proc)
    assert json.loads(out.read_text()) == result
    assert any("speedup train" in line for line in text)  # the readable line

    assert result["rows"] == 2000 and result["rows_requested"] == 2000
    assert result["batch_size"] == 256 and result["steps"] == 3
    assert result["data"]["synthesised"] and result["data"]["ids_rehashed"]
    assert not os.path.exists(result["data"]["dir"])  # temporary data removed
    assert result["dataset"]["parse_seconds"] > 0 and result["dataset"]["rows_per_sec"] > 0
    for section in (result["train"], result["infer"]):
        _check_pipeline(section)
    assert result["train"]["steps"] == 3 and result["train"]["samples"] == 3 * 256
    assert 0.0 <= result["train"]["reader_cost_share"] <= 1.0
    memory = result["memory"]
    assert memory["peak_rss_mb"] >= memory["peak_rss_mb_ours_train"] > 0
    if bm.rss_anon_mb() is not None:
        assert memory["peak_rss_anon_mb"] >= memory["peak_rss_anon_mb_ours_train"] > 0
        assert memory["peak_rss_anon_mb_ours_train"] >= memory["rss_anon_after_parse_mb"] > 0
        assert memory["peak_rss_anon_mb"] <= memory["peak_rss_mb"] + 1  # anonymous pages are part of RSS
        assert "anonymous" in " ".join(text)

    base = result["baseline"]
    assert base["first_batch_matches_ours"] is True
    assert base["overrides"] == ["hyper_parameters.optimizer.lazy_mode=true"]
    for section in (base["train"], base["infer"]):
        _check_pipeline(section)
    assert base["train"]["samples"] == result["train"]["samples"]
    assert result["speedup"]["train"] > 0 and result["speedup"]["infer"] > 0
    assert "model_specific" not in result  # DeepFM has no benchmarks/models/deepfm.py


def test_benchmark_existing_data_and_model_specific_hook(tmp_path):
    """--data benchmarks files as they are; the model's own benchmark (--extra) is called."""
    model_dir = tmp_path / "model"
    shutil.copytree(DEEPFM_DIR, model_dir, ignore=shutil.ignore_patterns("output_*", "__pycache__"))
    (tmp_path / "extra.py").write_text(
        "def run_benchmark(config):\n"
        "    return {'batch': config.get('runner.train_batch_size'), 'ok': True}\n")
    proc = run_tool("benchmarks/benchmark.py", "-m", str(model_dir / "config.yaml"), "--data", SAMPLE_DIR,
                    "--batch-size", "16", "--steps", "2", "--warmup", "0", "--infer-steps", "1",
                    "--extra", str(tmp_path / "extra.py"), "-o", REAL_IDS)
    result, _ = _json_result(proc)
    assert result["data"]["synthesised"] is False and result["rows_requested"] is None
    with open(list_data_files(SAMPLE_DIR, "x")[0]) as f:
        assert result["rows"] == sum(1 for line in f if line.strip())
    assert result["model_specific"] == {"batch": 16, "ok": True}
    assert "baseline" not in result and "speedup" not in result


@pytest.mark.parametrize("script", ["benchmarks/benchmark.py", "tools/benchmark.py"])  # the harness's path too
def test_benchmark_user_error_is_one_line(script):
    proc = run_tool(script, "-m", DEEPFM_CONFIG, "--data", os.path.join(REPO, "no-such-dir"))
    assert proc.returncode == 2
    assert "no-such-dir" in proc.stderr and "Traceback" not in proc.stderr


def test_synthesise_rehashes_ids_deterministically(tmp_path):
    
    slots = bm.typed_slots(_criteo_module(), model_config(DEEPFM_CONFIG))
    source = list_data_files(SAMPLE_DIR, "x")
    lines = bm.read_lines(source)
    info = bm.synthesise(source, str(tmp_path / "a"), 500, slots=slots, num_ids=1000, num_files=3)
    again = bm.synthesise(source, str(tmp_path / "b"), 500, slots=slots, num_ids=1000, num_files=3)
    assert info["rows"] == 500 and info["files"] == 3 and info["ids_rehashed"]
    out = bm.read_lines(sorted(str(p) for p in (tmp_path / "a").iterdir()))
    assert out == bm.read_lines(sorted(str(p) for p in (tmp_path / "b").iterdir())) and again["rows"] == 500
    assert len(out) == 500
    ids = np.array([[int(t.split(":")[1]) for t in line.split()[14:]] for line in out])
    assert ids.min() >= 0 and ids.max() < 1000
    n = len(lines)
    assert len({tuple(r) for r in ids}) > n  # replicas differ from each other
    # labels and dense values are copied; the first pass keeps ids (mod the table size)
    for i in (0, n - 1, n, 2 * n + 3):
        assert out[i].split()[:14] == lines[i % n].split()[:14]
    first = [int(t.split(":")[1]) % 1000 for t in lines[0].split()[14:]]
    assert ids[0].tolist() == first


def test_line_by_line_baseline_matches_our_reader(tmp_path):
    """The baseline feeds the network exactly the rows our bulk reader produces."""
    
    module = _criteo_module()
    config = model_config(DEEPFM_CONFIG, [REAL_IDS])
    files = list_data_files(SAMPLE_DIR, "x")
    ours = module.RecDataset(files, config)
    line_dataset = pr.LineByLineSlotDataset(files, bm.typed_slots(module, config))
    adapter = pr.BatchAdapter(line_dataset, ours.take(np.arange(4)))
    assert adapter.error is None
    loader = paddle.io.DataLoader(line_dataset, batch_size=8, drop_last=True)
    for k, batch in enumerate(loader):
        columns = adapter(batch)
        assert tuple(columns["click"].shape) == (8,) and tuple(columns["dense_feature"].shape) == (8, 13)
        assert tuple(columns["26"].shape) == (8,) and len(columns) == 28
        assert pr.batches_equal(ours.take(np.arange(8 * k, 8 * k + 8)), columns)
        if k == 2:
            break
    # a column the slots cannot produce is reported, not guessed
    assert pr.BatchAdapter(line_dataset, {"other": np.zeros((4, 5), np.float32)}).error
    assert pr.BatchAdapter(line_dataset, {"dense_feature": np.zeros((4, 5), np.float32)}).error


def test_split_steps_and_meter():
    assert bm.split_steps(10, 3) == [4, 3, 3]
    assert bm.split_steps(2, 3) == [1, 1]
    meter = bm.Meter()
    meter.add_round(100, 0.5, 0.1, [0.25, 0.25])
    meter.add_round(100, 0.5, 0.0, [0.5])
    summary = meter.summary()
    assert summary["ins_per_sec"] == pytest.approx(200.0) and summary["reader_share"] == pytest.approx(0.1)
    assert summary["steps"] == 3 and summary["ins_per_sec_rounds"] == [200.0, 200.0]


MB = 2 ** 20
needs_rss_anon = pytest.mark.skipif(bm.rss_anon_mb() is None, reason="no RssAnon in /proc/self/status")


@needs_rss_anon
def test_peak_rss_anon_sampler_sees_an_allocation_inside_its_window():
    with bm.PeakRssAnonSampler(interval=0.01) as sampler:
        start = sampler.start_mb
        # An anonymous mapping of its own, so that freeing it returns it to the kernel whatever
        # malloc keeps (tools.utils.prepare_process keeps freed heap memory for reuse).
        mapping = mmap.mmap(-1, 200 * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        block = np.frombuffer(mapping, dtype=np.uint8)
        block[:] = 1  # every page written: resident at once
        time.sleep(0.2)  # several sampling intervals
        del block
        mapping.close()
        time.sleep(0.05)
    assert sampler.peak_mb - start >= 150, (start, sampler.peak_mb)
    assert bm.rss_anon_mb() < sampler.peak_mb - 100  # freed: the peak is a peak
    assert not sampler.running and sampler.stop() == sampler.peak_mb  # stop is idempotent


@needs_rss_anon
def test_mapped_file_pages_count_in_rss_but_not_in_rss_anon(tmp_path):
    path = tmp_path / "mapped.bin"
    chunk = np.full(8 * MB, 7, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        for _ in range(25):  # 200 MB of data (not a sparse file)
            f.write(chunk)
    del chunk
    rss, anon = bm.current_rss_mb(), bm.rss_anon_mb()
    sampler = bm.PeakRssAnonSampler(interval=0.01).start()
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    touched = int(mapped[::4096].sum())  # one byte per page: every page faulted in
    time.sleep(0.1)
    rss_mapped, peak_anon = bm.current_rss_mb(), sampler.stop()
    del mapped
    assert touched == 7 * (200 * MB // 4096)
    assert rss_mapped - rss >= 150, (rss, rss_mapped)
    assert peak_anon - anon < 8, (anon, peak_anon)


def test_rss_anon_of_a_missing_process_is_none():
    assert bm.rss_anon_mb(pid="no-such-pid") is None


def test_write_data_then_benchmark_it_with_in_memory_reference(tmp_path):
    """--write-data only synthesises; --data then converts it once into the cache and --in-memory
    trains an in-memory copy of the same rows beside it."""
    out = tmp_path / "data"
    proc = run_tool("benchmarks/benchmark.py", "-m", DEEPFM_CONFIG, "--rows", "300", "--files", "2", "--write-data", str(out),
                    "-o", SMALL_TABLE)
    assert proc.returncode == 0, proc.stderr
    assert len(list_data_files(str(out), "x")) == 2 and not proc.stdout.strip()
    proc = run_tool("benchmarks/benchmark.py", "-m", DEEPFM_CONFIG, "--data", str(out), "--batch-size", "32",
                    "--steps", "6", "--warmup", "0", "--infer-steps", "2", "--in-memory", "--rounds", "2", "-o", SMALL_TABLE)
    result, _ = _json_result(proc)
    assert result["rows"] == 300 and result["dataset"]["open_cached_seconds"] >= 0
    assert result["in_memory"]["train"]["samples"] == result["train"]["samples"]
    assert result["in_memory"]["same_last_loss"]  # the same rows, model and seed: the same training
    assert len(result["mmap_vs_in_memory"]["train_rounds"]) == 2
    assert os.path.isdir(out / ".rec_cache")


def test_paddlerec_esmm_baseline_matches_our_ali_ccp_reader(tmp_path):
    """The Ali-CCP baseline (PaddleRec's ESMM reader, line by line) feeds the network the rows our
    bulk reader produces, every field:id pair included."""
    esmm = os.path.join(REPO, "models", "multitask", "esmm")
    module = importlib.import_module("models.common.datasets.aliccp")
    config = model_config(os.path.join(esmm, "config.yaml"), [f"runner.data_cache_dir={tmp_path}"])
    files = list_data_files(os.path.join(esmm, "data", "test"), "x")
    ours = module.RecDataset(files, config)
    line_dataset, adapter = pr.paddlerec_line_reader(module, files, ours.take(np.arange(4)))
    assert adapter.error is None
    loader = paddle.io.DataLoader(line_dataset, batch_size=16, drop_last=True)
    for k, batch in enumerate(loader):
        assert pr.batches_equal(ours.take(np.arange(16 * k, 16 * k + 16)), adapter(batch))
        if k == 3:
            break
    assert pr.paddlerec_line_reader(_criteo_module(), files, {}) is None  # slot readers keep their baseline

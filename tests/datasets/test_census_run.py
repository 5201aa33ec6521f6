"""datasets/census/run.sh + preprocess.py on hand-made raw rows and on the real 1,891-row prefix."""
import gzip
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pandas as pd
import pytest

from models.common.artifacts import fingerprint, read_manifest
from models.common.data.cache import list_data_files
from tests.datasets.test_criteo_preprocess import contents, folder_state, killed_runs, tree_bytes

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN_SH = os.path.join(REPO, "datasets", "census", "run.sh")
SAMPLE = os.path.join(REPO, "models", "multitask", "mmoe", "data")
_spec = importlib.util.spec_from_file_location("census_pp", os.path.join(REPO, "datasets", "census", "preprocess.py"))
pp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pp)


def raw_row(age=40, worker="Private", education="Bachelors degree(BA AB BS)", marital="Never married",
            weeks=52, income="- 50000."):
    fields = [str(age), worker, "0", "0", education, "0", "Not in universe", marital, "Retail trade", "Sales",
              "White", "All other", "Female", "Not in universe", "Not in universe", "Full-time schedules", "0", "0",
              "100", "Single", "Not in universe", "Not in universe", "Householder", "Householder", "1234.5",
              "Nonmover", "Nonmover", "Nonmover", "Yes", "Not in universe", "3", "Not in universe",
              "United-States", "United-States", "United-States", "Native- Born in the United States", "0",
              "Not in universe", "2", str(weeks), "95", income]
    return ", ".join(fields)


def varied_rows(n, seed=0):
    """n raw rows with a few values of each varied column."""
    rng = np.random.default_rng(seed)
    workers = ["Private", "Self-employed-incorporated", "Local government", "Never worked"]
    maritals = ["Never married", "Divorced", "Married-civilian spouse present"]
    return [raw_row(age=int(rng.integers(16, 90)), worker=workers[rng.integers(len(workers))],
                    marital=maritals[rng.integers(len(maritals))], weeks=int(rng.integers(0, 53)),
                    income="50000+." if rng.random() < 0.2 else "- 50000.") for _ in range(n)]


def write_raw(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "census-income.data"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return str(folder)


def run(raw_dir, out_dir, *extra):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", RUN_SH, "--raw", str(raw_dir), "--out", str(out_dir), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def run_here(raw_dir, out_dir, *opts):
    """preprocess.py in this process (fast); its exit status."""
    return pp.main(["--raw", str(raw_dir), "--out", str(out_dir), *[str(o) for o in opts]])


def test_hand_made_rows_give_one_hot_features_standardised_numerics_and_the_two_labels(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [raw_row(age=20, marital="Never married", income="- 50000."),
            raw_row(age=60, worker="Self-employed-incorporated", marital="Married-civilian spouse present",
                    income="50000+."),
            raw_row(age=40, marital="Divorced", income="- 50000.")]
    (raw / "census-income.data").write_text("\n".join(rows[:2]) + "\n")
    (raw / "census-income.test").write_text(rows[2])  # no final newline, as the UCI file
    result = run(raw, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    train = pd.read_csv(tmp_path / "out" / "train_data" / "census_train.csv")
    test = pd.read_csv(tmp_path / "out" / "test_data" / "census_test.csv")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert train["income"].tolist() == [0, 1] and train["marital"].tolist() == [1, 0]
    assert test["income"].tolist() == [0] and test["marital"].tolist() == [0]
    assert list(train.columns[2:]) == meta["feature_names"] and meta["feature_dim"] == len(train.columns) - 2
    # No label and no column made from a label; the instance weight is dropped.
    assert not [c for c in train.columns[2:] if "marital" in c or "income" in c or "instance weight" in c]
    # Numerics standardised with the training split: ages 20, 60 -> -1, 1; test age 40 -> 0.
    assert train["features:age"].tolist() == [-1, 1] and test["features:age"].tolist() == [0]
    # One-hot over training categories; the test row's worker class was seen, its one-hot is set.
    workers = [c for c in train.columns if c.startswith("features:class of worker=")]
    assert sorted(workers) == ["features:class of worker=Private", "features:class of worker=Self-employed-incorporated"]
    assert train[workers].sum(axis=1).tolist() == [1, 1] and test["features:class of worker=Private"].tolist() == [1]
    assert "official census-income.test" in result.stdout


@pytest.mark.parametrize("row, message", [
    (raw_row()[: raw_row().rfind(",")], "line 2: expected 42 comma-separated fields, found 41"),
    (raw_row(income="maybe"), "line 2: income is 'maybe'"),
    (raw_row(age="forty"), "line 2: age is 'forty', expected a number"),
])
def test_bad_raw_rows_name_the_line(tmp_path, row, message):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "census-income.data").write_text(raw_row() + "\n" + row + "\n")
    result = run(raw, tmp_path / "out")
    assert result.returncode == 2 and f"{raw / 'census-income.data'}, {message}" in result.stderr, result.stderr
    assert os.listdir(tmp_path / "out") == []  # nothing, not even a staging folder


def test_a_bad_row_names_the_users_file_not_the_unpacked_copy(tmp_path):
    """run.sh unpacks into a temporary folder: the message names the .gz or the archive given."""
    rows = (raw_row() + "\n" + raw_row(income="maybe") + "\n").encode()
    (tmp_path / "gz").mkdir()
    with gzip.open(tmp_path / "gz" / "census-income.data.gz", "wb") as f:
        f.write(rows)
    (tmp_path / "tar").mkdir()
    with tarfile.open(tmp_path / "tar" / "census.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("census-income.data")
        info.size = len(rows)
        archive.addfile(info, io.BytesIO(rows))
    for raw, shown in (("gz", "census-income.data.gz (decompressed)"), ("tar", "census.tar.gz (census-income.data)")):
        result = run(tmp_path / raw, tmp_path / "out")
        assert result.returncode == 2, result.stderr
        assert f"error: {tmp_path / raw / shown}, line 2: income is 'maybe'" in result.stderr, result.stderr


def test_the_real_prefix_reproduces_the_shipped_sample(shared_data, tmp_path):
    """`run.sh --raw ../shared/data/census-income/kdd_raw_prefix` (seeded 80/20 split) writes
    exactly the files MMoE and Share-Bottom ship, each split with positives of both labels."""
    result = run(os.path.join(shared_data, "census-income", "kdd_raw_prefix"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "census-income.data: 1891 rows" in result.stdout
    for split in ("train", "test"):
        new = (tmp_path / f"{split}_data" / f"census_{split}.csv").read_bytes()
        with open(os.path.join(SAMPLE, split, f"census_{split}.csv"), "rb") as f:
            assert new == f.read(), f"{split}: rerun run.sh and commit models/multitask/mmoe/data"
        frame = pd.read_csv(tmp_path / f"{split}_data" / f"census_{split}.csv")
        assert frame["income"].sum() > 10 and frame["marital"].sum() > 10
    counts = json.loads((tmp_path / "meta.json").read_text())["counts"]
    assert counts["train"]["rows"] == 1513 and counts["test"]["rows"] == 378
    assert np.isclose(pd.read_csv(tmp_path / "train_data" / "census_train.csv")["features:age"].mean(), 0, atol=1e-5)


def test_chunked_writing_gives_the_same_bytes(tmp_path):
    """preprocess.py transforms and writes in row chunks (bounded memory on the full file)."""
    raw = tmp_path / "census-income.data"
    raw.write_text("\n".join(raw_row(age=20 + i, weeks=i % 53, marital="Never married" if i % 3 else "Divorced",
                                     income="50000+." if i % 7 == 0 else "- 50000.") for i in range(50)) + "\n")
    frame = pp.read_raw(str(raw))
    stats, categories, names = pp.fit(frame)
    pp.write_csv(str(tmp_path / "one.csv"), frame, stats, categories, names)
    pp.write_csv(str(tmp_path / "many.csv"), frame, stats, categories, names, chunk_rows=7)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "many.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "many.csv")) == 50


# ---- the outputs as artifacts: manifests, one id space, --replace, killed runs ----------------------
def test_manifests_list_the_csv_with_its_rows_and_meta_json_shares_the_id_space(tmp_path):
    raw = write_raw(tmp_path / "raw", varied_rows(60))
    out = tmp_path / "out"
    assert run_here(raw, out) == 0
    meta = json.loads((out / "meta.json").read_text())
    for split in ("train", "test"):
        folder, name = out / f"{split}_data", f"census_{split}.csv"
        manifest = read_manifest(folder)
        assert manifest["data_set"] == "census" and manifest["split"] == split and split in manifest["kind"]
        assert manifest["files"] == {name: {"bytes": os.path.getsize(folder / name), "rows": meta["counts"][split]["rows"]}}
        assert len(pd.read_csv(folder / name)) == meta["counts"][split]["rows"]
        assert manifest["fingerprints"] == {"id_space": meta["id_space"]}
        assert manifest["feature_dim"] == meta["feature_dim"]
        assert list_data_files(str(folder), f"runner.{split}_data_dir") == [str(folder / name)]
    assert meta["counts"]["train"]["rows"] + meta["counts"]["test"]["rows"] == 60
    assert meta["id_space"] == fingerprint({"format": "census columnar CSV", "feature_names": meta["feature_names"],
                                            "numeric_mean_std": meta["numeric_mean_std"], "split": meta["split"]})
    # deterministic, manifests included; another split or other raw rows: another id space
    assert run_here(raw, tmp_path / "again") == 0
    assert contents(tmp_path / "again") == contents(out)
    spaces = {meta["id_space"]}
    for name, raw_dir, opts in (("seed", raw, ["--seed", 7]), ("fraction", raw, ["--test-fraction", 0.5]),
                                ("rows", write_raw(tmp_path / "raw2", varied_rows(60, seed=1)), [])):
        assert run_here(raw_dir, tmp_path / name, *opts) == 0
        spaces.add(json.loads((tmp_path / name / "meta.json").read_text())["id_space"])
        assert {read_manifest(tmp_path / name / f"{s}_data")["fingerprints"]["id_space"] for s in ("train", "test")} \
            <= spaces
    assert len(spaces) == 4


def test_existing_output_is_refused_without_replace_and_replaced_whole_with_it(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_here(write_raw(tmp_path / "raw", varied_rows(40)), out) == 0
    first = tree_bytes(out)
    other = write_raw(tmp_path / "other", varied_rows(50, seed=2))
    result = run(other, out)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and f"{out / 'train_data'} already holds files" in errors[0] and "--replace" in errors[0]
    assert tree_bytes(out) == first
    # with --replace (through run.sh): exactly a fresh run's output, nothing of the first run left
    result = run(other, out, "--replace")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_here(other, tmp_path / "fresh") == 0
    assert contents(out) == contents(tmp_path / "fresh")
    assert not set(tree_bytes(out).items()) & set(first.items())
    # a meta.json alone is refused as well
    (tmp_path / "meta_only").mkdir()
    shutil.copy(out / "meta.json", tmp_path / "meta_only" / "meta.json")
    capsys.readouterr()
    assert run_here(other, tmp_path / "meta_only") == 2
    assert f"{tmp_path / 'meta_only' / 'meta.json'} already exists" in capsys.readouterr().err
    assert os.listdir(tmp_path / "meta_only") == ["meta.json"]


def test_killed_runs_leave_the_old_or_the_whole_new_output_and_a_rerun_matches(tmp_path):
    names = ["train_data", "test_data", "meta.json"]
    raw = write_raw(tmp_path / "raw", varied_rows(80, seed=3))
    assert run_here(raw, tmp_path / "new") == 0
    new = {name: folder_state(tmp_path / "new" / name) for name in names}
    assert run_here(write_raw(tmp_path / "raw_old", varied_rows(30, seed=4)), tmp_path / "old", "--seed", 5) == 0
    out = tmp_path / "out"

    def put_old():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tmp_path / "old", out)

    steps = killed_runs(out, names, put_old, lambda: run_here(raw, out, "--replace"), new, seed=13)
    assert steps >= 2 * 3 + 1  # each folder's manifest and two renames, then meta.json

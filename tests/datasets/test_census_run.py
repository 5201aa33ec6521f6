"""datasets/census/run.sh + preprocess.py on hand-made raw rows and on the real 1,891-row prefix."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN_SH = os.path.join(REPO, "datasets", "census", "run.sh")
SAMPLE = os.path.join(REPO, "models", "multitask", "mmoe", "data")


def raw_row(age=40, worker="Private", education="Bachelors degree(BA AB BS)", marital="Never married",
            weeks=52, income="- 50000."):
    fields = [str(age), worker, "0", "0", education, "0", "Not in universe", marital, "Retail trade", "Sales",
              "White", "All other", "Female", "Not in universe", "Not in universe", "Full-time schedules", "0", "0",
              "100", "Single", "Not in universe", "Not in universe", "Householder", "Householder", "1234.5",
              "Nonmover", "Nonmover", "Nonmover", "Yes", "Not in universe", "3", "Not in universe",
              "United-States", "United-States", "United-States", "Native- Born in the United States", "0",
              "Not in universe", "2", str(weeks), "95", income]
    return ", ".join(fields)


def run(raw_dir, out_dir, *extra):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", RUN_SH, "--raw", str(raw_dir), "--out", str(out_dir), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


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
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "out" / "train_data").exists()


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
    import importlib.util

    spec = importlib.util.spec_from_file_location("census_pp", os.path.join(REPO, "datasets", "census", "preprocess.py"))
    pp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pp)
    raw = tmp_path / "census-income.data"
    raw.write_text("\n".join(raw_row(age=20 + i, weeks=i % 53, marital="Never married" if i % 3 else "Divorced",
                                     income="50000+." if i % 7 == 0 else "- 50000.") for i in range(50)) + "\n")
    frame = pp.read_raw(str(raw))
    stats, categories, names = pp.fit(frame)
    pp.write_csv(str(tmp_path / "one.csv"), frame, stats, categories, names)
    pp.write_csv(str(tmp_path / "many.csv"), frame, stats, categories, names, chunk_rows=7)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "many.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "many.csv")) == 50

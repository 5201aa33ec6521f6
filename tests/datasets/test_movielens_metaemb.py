"""datasets/movielens/preprocess_metaemb.py: thresholds, split sizes, alignment, determinism; the
output folder (manifests, id_space, --replace)."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from datasets.movielens import preprocess_metaemb as pre
from datasets.movielens.raw import ML100K_GENRES
from models.common.artifacts import read_manifest
from models.common.data.cache import list_data_files


def toy(counts, seed=0):
    """Raw-like tables: item i+1 rated counts[i] times by distinct users."""
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({"user_id": np.arange(1, 201), "gender": ["M", "F"] * 100, "age": rng.integers(10, 70, 200),
                          "occupation": ["writer", "doctor"] * 100, "zip": "0"})
    items = pd.DataFrame({"item_id": np.arange(1, len(counts) + 1), "title": [f"movie {i} the" for i in range(len(counts))],
                          "year": 1990, "genres": [(ML100K_GENRES[1 + i % 18],) for i in range(len(counts))]})
    rows = [pd.DataFrame({"user_id": rng.choice(200, c, replace=False) + 1, "item_id": i + 1,
                          "rating": rng.integers(1, 6, c), "timestamp": rng.integers(0, 10**6, c)})
            for i, c in enumerate(counts)]
    return pd.concat(rows, ignore_index=True), users, items


def splits_of(counts, n_old=20, n_min=9, k=3, seed=1):
    ratings, users, items = toy(counts)
    columns = pre.encode(ratings, users, items)
    splits, stats = pre.split(columns, n_old, n_min, k, seed)
    return columns, splits, stats


def test_thresholds_and_sizes():
    counts = [30, 21, 20, 10, 9, 50, 3]  # old: >20 -> 30, 21, 50; new: 9 < c <= 20 -> 20, 10; dropped: 9, 3
    columns, splits, stats = splits_of(counts)
    item = columns["item_id"]
    assert (stats["old_items"], stats["new_items"], stats["dropped_items"]) == (3, 2, 2)
    assert sorted(np.unique(item[splits["pretrain"]])) == [1, 2, 6]
    assert len(splits["pretrain"]) == 30 + 21 + 50
    for s in "abcd":
        rows = splits[f"meta_{s}"]
        assert len(rows) == 3 * 3 and sorted(np.unique(item[rows])) == [1, 2, 6]
    # a-d: disjoint ratings of the same items, in the same item order (row i of a and b: same item)
    meta = [splits[f"meta_{s}"] for s in "abcd"]
    assert len(np.unique(np.concatenate(meta))) == 4 * 9
    assert all((item[m] == item[meta[0]]).all() for m in meta)
    for s in "abc":
        assert len(splits[f"warm_{s}"]) == 2 * 3 and sorted(np.unique(item[splits[f"warm_{s}"]])) == [3, 4]
    assert len(splits["test"]) == (20 - 9) + (10 - 9)
    # warm-up a, b, c then test follow each new item's time order
    for i in (3, 4):
        parts = [r[item[r] == i] for r in (splits["warm_a"], splits["warm_b"], splits["warm_c"], splits["test"])]
        times = np.concatenate([columns["timestamp"][p] for p in parts])
        assert (np.diff(times) >= 0).all()
    new_rows = np.concatenate([splits[n] for n in ("warm_a", "warm_b", "warm_c", "test")])
    assert len(np.unique(new_rows)) == 30 and not set(new_rows) & set(splits["pretrain"])


def test_deterministic_given_seed():
    _, a, _ = splits_of([30, 21, 20, 10, 50])
    _, b, _ = splits_of([30, 21, 20, 10, 50])
    _, c, _ = splits_of([30, 21, 20, 10, 50], seed=2)
    assert all((a[n] == b[n]).all() for n in a)
    assert any(not np.array_equal(a[n], c[n]) for n in a)


@pytest.mark.parametrize("n_old, n_min, k, message", [
    (20, 8, 3, "--n-min 8 must be at least 3 \\* --k = 9"),
    (11, 10, 3, "--n-old 11 must be at least 4 \\* --k = 12"),
    (12, 12, 3, "--n-old 12 must be larger than --n-min 12"),
])
def test_bad_thresholds_rejected(n_old, n_min, k, message):
    with pytest.raises(ValueError, match=message):
        splits_of([30, 20], n_old, n_min, k)


def test_encoding():
    ratings, users, items = toy([5])
    items.loc[0, "title"] = "Alpha beta, alpha gamma delta epsilon zeta eta theta iota"
    items.at[0, "genres"] = ("Action", "Comedy")
    items.loc[0, "year"] = 0
    columns = pre.encode(ratings, users, items, title_vocab=3)  # alpha (twice) and beta kept
    assert (columns["label"] == (ratings["rating"].to_numpy() >= 4)).all()
    assert columns["title"][0].tolist() == [1, 2, 1, 0, 0, 0, 0, 0] and columns["title_length"][0] == 8
    assert columns["genres"][0].tolist()[:2] == [1, 5] and columns["genres_length"][0] == 2
    assert columns["year"][0] == 0
    ages = pd.Series([7, 18, 24, 25, 49, 56, 73])
    users = users.iloc[:7].assign(age=ages.to_numpy())
    assert pre.encode_users(users)["age"].tolist() == [0, 1, 1, 2, 4, 6, 6]


def write_toy_raw(raw_dir, counts=(30, 21, 20, 10)):
    raw_dir.mkdir()
    ratings, users, items = toy(list(counts))
    (raw_dir / "u.data").write_text("".join(f"{r.user_id}\t{r.item_id}\t{r.rating}\t{r.timestamp}\n"
                                            for r in ratings.itertuples()))
    (raw_dir / "u.user").write_text("".join(f"{u.user_id}|{u.age}|{u.gender}|{u.occupation}|0\n"
                                            for u in users.itertuples()))
    flags = lambda gs: "|".join("1" if g in gs else "0" for g in ML100K_GENRES)  # noqa: E731
    (raw_dir / "u.item").write_text("".join(f"{i.item_id}|{i.title} (1995)|01-Jan-1995||url|{flags(i.genres)}\n"
                                            for i in items.itertuples()), encoding="latin-1")
    return raw_dir


THRESHOLDS = ["--n-old", "20", "--n-min", "9", "--k", "3"]
DATA_FOLDERS = {"pretrain": ["pretrain.npz"], "meta": [f"meta_{s}.npz" for s in "abcd"],
                "warm": [f"warm_{s}.npz" for s in "abc"], "test": ["test.npz"]}


def test_run_writes_files(tmp_path):
    raw_dir = write_toy_raw(tmp_path / "raw")
    out = tmp_path / "out"
    pre.main(["--raw", str(raw_dir), "--out", str(out), *THRESHOLDS])
    stats = json.loads((out / "meta.json").read_text())
    assert stats["rows"]["test"] == 11 + 1 and stats["smallest_vocab"]["item_id"] == 5
    with np.load(out / "warm" / "warm_a.npz") as data:
        assert sorted(data.files) == sorted(pre.COLUMNS) and len(data["label"]) == 6
    for name in ("pretrain/pretrain", "meta/meta_d", "warm/warm_c", "test/test"):
        assert (out / f"{name}.npz").exists()


def test_manifests_rows_and_id_space(tmp_path):
    """Every data folder a config points at has a manifest (its files, their rows, the id space);
    the folder's manifest and meta.json carry the same id space; the .npz bytes are reproducible."""
    raw_dir = write_toy_raw(tmp_path / "raw")
    pre.main(["--raw", str(raw_dir), "--out", str(tmp_path / "a"), *THRESHOLDS])
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    top = read_manifest(str(tmp_path / "a"))
    space = top["fingerprints"]["id_space"]
    assert meta["id_space"] == space and top["data_set"] == "movielens" and top["command"][0] == "preprocess_metaemb.py"
    assert set(top["files"]) == {"meta.json"} | {f"{d}/{f}" for d, files in DATA_FOLDERS.items() for f in files}
    for folder, files in DATA_FOLDERS.items():
        manifest = read_manifest(str(tmp_path / "a" / folder))
        assert manifest["fingerprints"] == {"id_space": space} and sorted(manifest["files"]) == files
        assert list_data_files(str(tmp_path / "a" / folder), folder) == [str(tmp_path / "a" / folder / f) for f in files]
        for name, info in manifest["files"].items():
            with np.load(tmp_path / "a" / folder / name) as data:
                assert info["rows"] == len(data["label"]) == meta["rows"][name[:-4]]
            assert top["files"][f"{folder}/{name}"] == info
    # the same input and options: the same bytes and id space; another seed or thresholds: another id space
    pre.main(["--raw", str(raw_dir), "--out", str(tmp_path / "b"), *THRESHOLDS])
    for folder, files in DATA_FOLDERS.items():
        for name in files:
            assert (tmp_path / "a" / folder / name).read_bytes() == (tmp_path / "b" / folder / name).read_bytes()
    assert read_manifest(str(tmp_path / "b"))["fingerprints"]["id_space"] == space
    pre.main(["--raw", str(raw_dir), "--out", str(tmp_path / "c"), *THRESHOLDS, "--seed", "7"])
    assert json.loads((tmp_path / "c" / "meta.json").read_text())["id_space"] != space


def test_second_run_is_refused_and_replace_leaves_nothing_of_the_first(tmp_path, capsys):
    raw_dir = write_toy_raw(tmp_path / "raw")
    out = tmp_path / "out"
    pre.main(["--raw", str(raw_dir), "--out", str(out), *THRESHOLDS])
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        pre.main(["--raw", str(raw_dir), "--out", str(out), *THRESHOLDS, "--seed", "7"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and str(out) in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    (out / "warm" / "warm_d.npz").write_bytes(b"a stray file")
    pre.main(["--raw", str(raw_dir), "--out", str(out), *THRESHOLDS, "--seed", "7", "--replace"])
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(first)  # the stray file is gone
    old_space, new_space = (json.loads(x)["id_space"] for x in (first[out / "meta.json"], (out / "meta.json").read_bytes()))
    assert old_space != new_space
    for folder in ["", *DATA_FOLDERS]:  # every manifest is the new run's
        assert read_manifest(str(out / folder))["fingerprints"]["id_space"] == new_space
    assert (out / "pretrain" / "pretrain.npz").read_bytes() != first[out / "pretrain" / "pretrain.npz"]  # reshuffled
    assert sorted(os.listdir(tmp_path)) == ["out", "raw"]  # no staging or old folder left


def test_bad_raw_line_is_one_line(tmp_path, capsys):
    raw_dir = write_toy_raw(tmp_path / "raw")
    with open(raw_dir / "u.data", "a") as f:
        f.write("1\t2\t3\n")
    line = len((raw_dir / "u.data").read_text().splitlines())
    with pytest.raises(SystemExit) as exit_:
        pre.main(["--raw", str(raw_dir), "--out", str(tmp_path / "out"), *THRESHOLDS])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"error: {raw_dir}/u.data, line {line}: 3 fields, expected 4 (user_id\titem_id\trating\ttimestamp)"]
    assert sorted(os.listdir(tmp_path)) == ["raw"]


def test_ml100k_thresholds(shared_data, tmp_path):
    stats = pre.run(os.path.join(shared_data, "ml-100k"), str(tmp_path))  # ml-100k's defaults: 100, 40, 10
    assert (stats["n_old"], stats["n_min"], stats["k"], stats["seed"]) == (100, 40, 10, 2019)
    assert (stats["old_items"], stats["new_items"]) == (334, 362)
    assert stats["rows"]["pretrain"] == 64419 and stats["rows"]["warm_a"] == 3620 and stats["rows"]["test"] == 12600


def test_ml1m_raw_layout(tmp_path):
    """ml-1m's files (age and occupation as codes, '::' separators) go through the same split."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    ratings, users, items = toy([30, 21, 20, 10])
    codes = [1, 18, 25, 35, 45, 50, 56]
    (raw_dir / "ratings.dat").write_text("".join(f"{r.user_id}::{r.item_id}::{r.rating}::{r.timestamp}\n"
                                                 for r in ratings.itertuples()))
    (raw_dir / "users.dat").write_text("".join(f"{u.user_id}::{u.gender}::{codes[u.user_id % 7]}::{u.user_id % 21}::0\n"
                                               for u in users.itertuples()))
    (raw_dir / "movies.dat").write_text("".join(f"{i.item_id}::{i.title} (1995)::{'|'.join(i.genres)}\n"
                                                for i in items.itertuples()), encoding="latin-1")
    out = tmp_path / "out"
    stats = pre.run(str(raw_dir), str(out), 20, 9, 3, 7)
    assert (stats["old_items"], stats["new_items"]) == (2, 2)
    with np.load(out / "pretrain" / "pretrain.npz") as data:
        assert data["age"].max() <= 6 and data["occupation"].max() <= 20 and (data["year"] == 95).all()

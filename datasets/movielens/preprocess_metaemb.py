"""MovieLens -> the MetaEmb (Pan et al., SIGIR 2019) cold-start splits, as .npz files.

    python datasets/movielens/preprocess_metaemb.py --raw DIR --out DIR [--n-old N --n-min N_MIN --k K --seed 2019] [--replace]

DIR holds a raw ml-100k or ml-1m copy (read by datasets/movielens/raw.py). One row per rating:

    label (rating >= 4), item_id (the "ad" ID), year, title (up to 8 word ids) + title_length,
    genres (up to 6 genre ids) + genres_length, user_id, age (7 buckets), gender, occupation

Items with more than N (--n-old) ratings are old, items with N_min < ratings <= N (--n-min) are
new; the rest are dropped. Written under --out:

    pretrain/pretrain.npz      every rating of the old items, in a seeded random order
    meta/meta_{a,b,c,d}.npz    per old item, 4K of its ratings drawn without replacement (seeded),
                               K in each set; items in the same seeded order in the four files
                               (rows of one item together), so row i of a and b share the item
    warm/warm_{a,b,c}.npz      per new item, its first K, next K and next K ratings in time order
                               (items in one seeded order, rows of one item together)
    test/test.npz              the remaining ratings of the new items (time order per item)
    meta.json                  thresholds, seed, row/item counts, vocabulary sizes, the run's id_space

--out is written whole (staged, then renamed into place; datasets/movielens/output.py) with a
manifest.json; pretrain/, meta/, warm/ and test/ have their own manifests (files, rows, and the
``id_space``: a digest of the raw tables, the title vocabulary, the user encodings, the
thresholds and the seed, equal in every file of one run). A non-empty --out is refused (exit
status 2) unless --replace is given. The .npz files are deterministic (fixed zip timestamps).

Default thresholds by data set: ml-1m the paper's N=300, N_min=80, K=20; ml-100k N=100, N_min=40,
K=10 (see models/rank/metaemb/readme.md). N_min >= 3K (every new item fills the three
warm-up batches and keeps test rows) and N >= 4K (every old item fills a-d) are checked.
Deterministic given the raw files, the thresholds and --seed.
"""
import argparse
import json
import os
import re
import sys
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
warnings.filterwarnings("ignore", message="No ccache found")  # paddle's, on import (models.common.datasets)

from datasets.movielens import raw  # noqa: E402
from datasets.movielens.output import data_folder, id_space, step_artifact  # noqa: E402
from models.common.artifacts import save_npz  # noqa: E402
from models.common.datasets.movielens import COLDSTART_COLUMNS as COLUMNS  # noqa: E402  (the files' columns)
from models.common.datasets.movielens import GENRE_VOCAB, GENRES_LEN, TITLE_LEN, YEAR_BASE, YEAR_VOCAB  # noqa: E402

GENRES = raw.ML100K_GENRES  # ml-1m's genre names are the same list without "unknown"
assert len(GENRES) == GENRE_VOCAB
AGE_BUCKETS = [18, 25, 35, 45, 50, 56]  # ml-1m's age codes 1, 18, ..., 56 as bucket edges
META_SETS, WARM_SETS = ("a", "b", "c", "d"), ("a", "b", "c")
_WORD = re.compile(r"[a-z0-9]+")


DEFAULT_THRESHOLDS = {"ml-1m": (300, 80, 20), "ml-100k": (100, 40, 10)}  # (N, N_min, K)


def check_thresholds(n_old, n_min, k):
    if k < 1:
        raise ValueError(f"--k must be at least 1, got {k}")
    if n_min < 3 * k:
        raise ValueError(f"--n-min {n_min} must be at least 3 * --k = {3 * k} (a new item fills warm-up a, b, c "
                         f"and keeps test rows)")
    if n_old < 4 * k:
        raise ValueError(f"--n-old {n_old} must be at least 4 * --k = {4 * k} (an old item fills the generator "
                         f"sets a, b, c, d)")
    if n_old <= n_min:
        raise ValueError(f"--n-old {n_old} must be larger than --n-min {n_min}")


def title_vocabulary(titles, size):
    """Word -> id in [1, size): the most frequent words (ties alphabetically); others map to 0."""
    counts = pd.Series([w for t in titles for w in _WORD.findall(t.lower())], dtype=object).value_counts()
    words = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size - 1]
    return {w: i + 1 for i, (w, _) in enumerate(words)}


def _pad(lists, width):
    out = np.zeros((len(lists), width), np.int64)
    lengths = np.zeros(len(lists), np.int64)
    for i, ids in enumerate(lists):
        ids = list(ids)[:width]
        out[i, :len(ids)] = ids
        lengths[i] = len(ids)
    return out, lengths


def encode_items(items, title_vocab):
    """items table -> {item_id: (year, title ids, genre ids)} as arrays aligned with items."""
    vocab = title_vocabulary(items["title"], title_vocab)
    titles = [[vocab.get(w, 0) for w in _WORD.findall(t.lower())] for t in items["title"]]
    index = {g: i for i, g in enumerate(GENRES)}
    unknown = sorted({g for gs in items["genres"] for g in gs if g not in index})
    if unknown:
        raise raw.RawFormatError(f"unknown genre(s) {unknown}; expected MovieLens genres {GENRES}")
    genres = [[index[g] for g in gs] for gs in items["genres"]]
    year = np.where(items["year"].to_numpy() > YEAR_BASE,
                    np.minimum(items["year"].to_numpy() - YEAR_BASE, YEAR_VOCAB - 1), 0)
    title, title_length = _pad(titles, TITLE_LEN)
    genre, genre_length = _pad(genres, GENRES_LEN)
    return {"item_id": items["item_id"].to_numpy(np.int64), "year": year.astype(np.int64), "title": title,
            "title_length": title_length, "genres": genre, "genres_length": genre_length}


def occupation_codes(users):
    """The occupations in code order (ml-1m's codes numerically, ml-100k's names alphabetically)."""
    return sorted(users["occupation"].astype(str).unique(), key=lambda o: (0, int(o)) if o.isdigit() else (1, o))


def encode_users(users):
    age = np.searchsorted(AGE_BUCKETS, users["age"].to_numpy(), side="right")  # 7 buckets, ml-1m's codes too
    gender = users["gender"].map({"M": 0, "F": 1})
    if gender.isna().any():
        raise raw.RawFormatError(f"user {users['user_id'][gender.isna()].iat[0]}: gender must be M or F")
    occupation = users["occupation"].astype(str).map({o: i for i, o in enumerate(occupation_codes(users))})
    return {"user_id": users["user_id"].to_numpy(np.int64), "age": age.astype(np.int64),
            "gender": gender.to_numpy(np.int64), "occupation": occupation.to_numpy(np.int64)}


def encodings(users, items, title_vocab=20001):
    """What decides the encoded ids besides the raw values: the title vocabulary, the occupation
    codes, the genre list and the age buckets."""
    return {"title_vocab": title_vocabulary(items["title"], title_vocab), "occupations": occupation_codes(users),
            "genres": GENRES, "age_buckets": AGE_BUCKETS, "year_base": YEAR_BASE, "year_vocab": YEAR_VOCAB}


def pair_features(user_ids, item_ids, users, items, title_vocab=20001):
    """-> {column: array}: every column but the label for each (raw user id, raw item id) pair
    (also used by preprocess_ranking.py, so that both write the same features)."""
    item_cols, user_cols = encode_items(items, title_vocab), encode_users(users)
    item_row = pd.Index(item_cols["item_id"]).get_indexer(item_ids)
    user_row = pd.Index(user_cols["user_id"]).get_indexer(user_ids)
    columns = {k: v[item_row] for k, v in item_cols.items()}
    columns.update({k: v[user_row] for k, v in user_cols.items()})
    return columns


def encode(ratings, users, items, title_vocab=20001):
    """-> {column: array} with one row per rating (ratings' order), plus 'timestamp'."""
    columns = {"label": (ratings["rating"].to_numpy() >= 4).astype(np.int64),
               "timestamp": ratings["timestamp"].to_numpy(np.int64)}
    columns.update(pair_features(ratings["user_id"], ratings["item_id"], users, items, title_vocab))
    return columns


def split(columns, n_old, n_min, k, seed):
    """-> {split name: row indices into ``columns``} (see the module docstring) and stats."""
    check_thresholds(n_old, n_min, k)
    rng = np.random.default_rng(seed)
    item = columns["item_id"]
    ids, counts = np.unique(item, return_counts=True)
    old_items, new_items = ids[counts > n_old], ids[(counts > n_min) & (counts <= n_old)]
    # Rows of each item in time order (ties by original row, i.e. user): stable sort by item, time.
    order = np.lexsort((np.arange(len(item)), columns["timestamp"], item))
    starts = np.searchsorted(item[order], ids)
    rows_of = {i: order[s:s + c] for i, s, c in zip(ids, starts, counts)}
    out = {}
    old_rows = np.concatenate([rows_of[i] for i in old_items]) if len(old_items) else np.zeros(0, np.int64)
    out["pretrain"] = rng.permutation(np.sort(old_rows))
    meta_order = rng.permutation(old_items)
    drawn = {i: rng.choice(rows_of[i], 4 * k, replace=False) for i in meta_order}
    for j, name in enumerate(META_SETS):
        out[f"meta_{name}"] = np.concatenate([drawn[i][j * k:(j + 1) * k] for i in meta_order]) \
            if len(meta_order) else np.zeros(0, np.int64)
    warm_order = rng.permutation(new_items)
    for j, name in enumerate(WARM_SETS):
        out[f"warm_{name}"] = np.concatenate([rows_of[i][j * k:(j + 1) * k] for i in warm_order]) \
            if len(warm_order) else np.zeros(0, np.int64)
    out["test"] = np.concatenate([rows_of[i][3 * k:] for i in warm_order]) \
        if len(warm_order) else np.zeros(0, np.int64)
    stats = {"n_old": n_old, "n_min": n_min, "k": k, "seed": seed, "old_items": int(len(old_items)),
             "new_items": int(len(new_items)), "dropped_items": int(len(ids) - len(old_items) - len(new_items)),
             "rows": {name: int(len(r)) for name, r in out.items()},
             "positive_rate": {name: float(columns["label"][r].mean()) if len(r) else float("nan")
                               for name, r in out.items()}}
    return out, stats


FOLDERS = {"pretrain": "pretrain", **{f"meta_{s}": "meta" for s in META_SETS},
           **{f"warm_{s}": "warm" for s in WARM_SETS}, "test": "test"}
KINDS = {"pretrain": "metaemb pre-training rows (old items)", "meta": "metaemb generator sets a-d (old items)",
         "warm": "metaemb warm-up batches a-c (new items)", "test": "metaemb test rows (new items)"}


def smallest_vocab(columns):
    """The vocabulary sizes a config needs for these rows (hyper_parameters.num_items, ...)."""
    return {"item_id": int(columns["item_id"].max()) + 1, "user_id": int(columns["user_id"].max()) + 1,
            "title": int(columns["title"].max()) + 1, "year": YEAR_VOCAB, "genres": len(GENRES),
            "age": len(AGE_BUCKETS) + 1, "gender": 2, "occupation": int(columns["occupation"].max()) + 1}


def write(columns, splits, stats, out_dir, source="", space=None):
    """The split files and meta.json into the folder ``out_dir``; -> {folder: {file: rows}}. With
    ``space`` (the run's id space), meta.json carries it as "id_space"."""
    rows = {}
    for name, indices in splits.items():
        folder = os.path.join(out_dir, FOLDERS[name])
        os.makedirs(folder, exist_ok=True)
        save_npz(os.path.join(folder, f"{name}.npz"), {c: columns[c][indices] for c in COLUMNS}, compress=True)
        rows.setdefault(FOLDERS[name], {})[f"{name}.npz"] = len(indices)
    meta = {"source": source, **stats, "smallest_vocab": smallest_vocab(columns)}
    with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta if space is None else {**meta, "id_space": space}, f, indent=1, sort_keys=True)
    return rows


def run(raw_dir, out_dir, n_old=None, n_min=None, k=None, seed=2019, title_vocab=20001, replace=False,
        command=None):
    """Thresholds left as None take the data set's defaults (DEFAULT_THRESHOLDS). ``out_dir`` is
    written whole, with manifests (see the module docstring); ``command``: the one they record, if
    not the process's."""
    with step_artifact(out_dir, "movielens metaemb cold-start splits", replace, command) as art:
        kind = raw.detect(raw_dir)
        n_old, n_min, k = (d if v is None else v for v, d in zip((n_old, n_min, k), DEFAULT_THRESHOLDS[kind]))
        check_thresholds(n_old, n_min, k)
        ratings, users, items = raw.load(raw_dir)
        columns = encode(ratings, users, items, title_vocab)
        splits, stats = split(columns, n_old, n_min, k, seed)
        space = id_space("metaemb", raw.digest(ratings, users, items), encodings=encodings(users, items, title_vocab),
                         n_old=n_old, n_min=n_min, k=k, seed=seed)
        rows = write(columns, splits, stats, art.path, source=f"{kind} at {os.path.abspath(raw_dir)}", space=space)
        for folder, files in rows.items():
            data_folder(art, folder, f"movielens {KINDS[folder]}", files, space)
        art.fingerprints["id_space"] = space
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="folder with a raw ml-100k or ml-1m copy")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-old", type=int, help="N: items with more ratings are old (default: ml-1m 300, ml-100k 100)")
    parser.add_argument("--n-min", type=int, help="N_min: new items have more ratings than this, at most N "
                        "(default: ml-1m 80, ml-100k 40)")
    parser.add_argument("--k", type=int, help="K: ratings per item in each generator / warm-up set "
                        "(default: ml-1m 20, ml-100k 10)")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--title-vocab", type=int, default=20001, help="title word ids (0 = rare word)")
    parser.add_argument("--replace", action="store_true", help="replace what --out holds (else a non-empty --out is refused)")
    args = parser.parse_args(argv)
    try:
        stats = run(args.raw, args.out, args.n_old, args.n_min, args.k, args.seed, args.title_vocab, args.replace,
                    command=None if argv is None else [os.path.basename(__file__), *argv])
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()

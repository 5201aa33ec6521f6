"""MovieLens (ml-100k or ml-1m, as read by raw.py) -> the two-tower retrieval data of models/recall/*.

    python datasets/movielens/preprocess_retrieval.py --raw DIR --out OUT [--max-history 50] [--replace]

Protocol (leave-last-out by time, the same for every model): every rating is an interaction; each
user's interactions are sorted by (timestamp, item id). The last one is the user's test item;
each earlier one, from the second on, is a training positive whose history is the up to
``max_history`` interactions before it (most recent first). The test row's history is the user's
last ``max_history`` training interactions.

Ids are re-encoded to 1..n (0 is padding / unknown): users, items (every item of the catalog, so
items nobody rated can still be retrieved), and each user field (gender, age, occupation, zip)
and genre, in sorted order of the raw values.

Output (PaddleRec slot format, read by models.common.datasets.movielens):
    OUT/train/train.txt  OUT/test/test.txt
        user_id:u gender:g age:a occupation:o zip:z hist:i1 .. hist:iH hist_length:l item_id:i
    OUT/dataset.json     vocabulary sizes, max_history, the item catalog (genres of each item,
                         its count of training interactions), raw id of each encoded user/item,
                         and the run's ``id_space``

OUT is written whole (staged, then renamed into place; datasets/movielens/output.py) with a
manifest.json; train/ and test/ have their own manifests (the file, its rows, the ``id_space``:
a digest of the raw tables and of the id maps, equal in every file of one run). An OUT that
already holds files is refused (exit status 2) unless --replace is given.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
warnings.filterwarnings("ignore", message="No ccache found")  # paddle's, on import (models.common.datasets)

from datasets.movielens import raw  # noqa: E402
from datasets.movielens.output import data_folder, id_space, step_artifact  # noqa: E402
from models.common.artifacts import ArtifactError  # noqa: E402
from models.common.datasets.movielens import USER_FEATURES, slot_names  # noqa: E402  (the rows' layout)

USER_FIELDS = USER_FEATURES[1:]  # after user_id


def _encode(values):
    """Sorted distinct values -> codes 1..n (0 stays free for padding/unknown)."""
    uniques, codes = np.unique(np.asarray(values), return_inverse=True)
    return codes.astype(np.int64) + 1, uniques


def build(ratings, users, items, max_history=50):
    """-> (train [rows, columns] int64, test [rows, columns] int64, info dict). Columns: user_id,
    gender, age, occupation, zip, hist * max_history, hist_length, item_id."""
    users = users.sort_values("user_id").reset_index(drop=True)
    items = items.sort_values("item_id").reset_index(drop=True)
    user_code = dict(zip(users["user_id"].to_numpy(), np.arange(1, len(users) + 1)))
    item_code = dict(zip(items["item_id"].to_numpy(), np.arange(1, len(items) + 1)))
    fields = {}
    vocab = {"user_id": len(users) + 1, "item_id": len(items) + 1}
    for name in USER_FIELDS:
        codes, uniques = _encode(users[name].astype(str).to_numpy())
        fields[name] = np.concatenate([[0], codes])  # indexed by encoded user id
        vocab[name] = len(uniques) + 1
    genre_names = sorted({g for gs in items["genres"] for g in gs})
    genre_code = {g: i + 1 for i, g in enumerate(genre_names)}
    max_genres = max(1, max(len(gs) for gs in items["genres"]))
    vocab["genre"] = len(genre_names) + 1
    item_genres = [[]] + [[genre_code[g] for g in gs] for gs in items["genres"]]

    # Interactions in time order per user (raw.load sorts by user, timestamp, item).
    order = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    u = order["user_id"].map(user_code).to_numpy(np.int64)
    i = order["item_id"].map(item_code).to_numpy(np.int64)
    n = len(u)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    lengths = np.diff(np.r_[starts, n])
    position = np.arange(n) - np.repeat(starts, lengths)  # index within the user's sequence
    last = np.zeros(n, dtype=bool)
    last[starts + lengths - 1] = True
    is_test = last & (lengths[np.repeat(np.arange(len(starts)), lengths)] >= 2)
    is_train = ~last & (position >= 1)
    counts = np.bincount(i[~is_test], minlength=len(items) + 1)  # interactions not held out, per item

    def rows(index):
        steps = np.arange(1, max_history + 1)
        back = index[:, None] - steps[None, :]  # most recent first
        valid = steps[None, :] <= position[index][:, None]
        hist = np.where(valid, i[np.clip(back, 0, None)], 0)
        user = u[index]
        return np.column_stack([user] + [fields[f][user] for f in USER_FIELDS]
                               + [hist, valid.sum(axis=1), i[index]]).astype(np.int64)

    train, test = rows(np.flatnonzero(is_train)), rows(np.flatnonzero(is_test))
    info = {
        "max_history": int(max_history),
        "max_genres": int(max_genres),
        "vocab": {k: int(v) for k, v in vocab.items()},
        "rows": {"train": int(len(train)), "test": int(len(test))},
        "users_with_test_item": int(len(test)),
        "genre_names": genre_names,
        "item_genres": item_genres,
        "item_count": counts.astype(int).tolist(),
        "item_raw_id": [0] + items["item_id"].astype(int).tolist(),
        "user_raw_id": [0] + users["user_id"].astype(int).tolist(),
    }
    return train, test, info


def write_slots(path, matrix, names):
    """Rows of ints as ``name:value`` lines (one format string applied by numpy per row)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savetxt(path, matrix, fmt=" ".join(f"{name}:%d" for name in names))


def preprocess(raw_dir, max_history=50):
    """-> (train, test, info, id space) of the raw copy in ``raw_dir`` (see ``build``)."""
    ratings, users, items = raw.load(raw_dir)
    train, test, info = build(ratings, users, items, max_history)
    info["source"] = {"kind": raw.detect(raw_dir), "ratings": int(len(ratings))}
    return train, test, info, id_space("retrieval", raw.digest(ratings, users, items), info=info)


def write_files(folder, train, test, info, space=None):
    """train/train.txt, test/test.txt and dataset.json into ``folder``; with ``space`` (the id
    space), dataset.json carries it as "id_space"."""
    names = slot_names(info["max_history"])
    write_slots(os.path.join(folder, "train", "train.txt"), train, names)
    write_slots(os.path.join(folder, "test", "test.txt"), test, names)
    with open(os.path.join(folder, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(info if space is None else {**info, "id_space": space}, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="folder with the raw ml-100k (u.data ...) or ml-1m (ratings.dat ...) files")
    parser.add_argument("--out", required=True, help="output folder (train/, test/, dataset.json)")
    parser.add_argument("--max-history", type=int, default=50, help="history length (default 50)")
    parser.add_argument("--replace", action="store_true", help="replace what --out holds (else a non-empty --out is refused)")
    args = parser.parse_args(argv)
    if args.max_history < 1:
        parser.error("--max-history must be at least 1")
    try:
        with step_artifact(args.out, "movielens retrieval rows (leave-last-out)", args.replace,
                           command=None if argv is None else [os.path.basename(__file__), *argv]) as art:
            train, test, info, space = preprocess(args.raw, args.max_history)
            write_files(art.path, train, test, info, space)
            data_folder(art, "train", "movielens retrieval training rows", {"train.txt": len(train)}, space)
            data_folder(art, "test", "movielens retrieval test rows", {"test.txt": len(test)}, space)
            art.fingerprints["id_space"] = space
    except (ArtifactError, raw.RawFormatError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{info['source']['kind']}: {info['source']['ratings']} ratings, {info['vocab']['user_id'] - 1} users, "
          f"{info['vocab']['item_id'] - 1} items -> {len(train)} training rows, {len(test)} test users; "
          f"written to {args.out}")


if __name__ == "__main__":
    main()

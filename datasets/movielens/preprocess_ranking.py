"""MovieLens retrieval split -> the rows of the ranking model of a recall-then-rank pipeline (MetaEmb's
DeepFM base, models/rank/metaemb/config_ml100k_rank.yaml), as .npz files.

    python datasets/movielens/preprocess_ranking.py --raw DIR --retrieval OUT/retrieval --out OUT/ranking
                                                    [--negatives 4] [--valid-fraction 0.05] [--seed 2021] [--replace]

The ranker trains on exactly the interactions the retrieval models train on, so that it never
sees a test user's held-out item: every row of OUT/retrieval/train/train.txt (written by
preprocess_retrieval.py from the same raw copy) gives its (user, positive item) as a row
labelled 1, plus --negatives rows labelled 0 whose items are drawn (seeded) from the catalog items
the user has no training interaction with, in proportion to their training count^0.75 (as the
retrieval models' popularity negatives). The test split is not read: a user's held-out item can be
drawn as a negative, as any item the user has not interacted with yet in production.

Ids are raw MovieLens ids, with the item features (year, title, genres) and user features (age,
gender, occupation) encoded by preprocess_metaemb.py's functions, in its columns. Written under --out:

    train/train.npz   the rows of all but --valid-fraction of the training positives, each positive
                      with its negatives, in a seeded random order
    valid/valid.npz   the rows of the other positives (seeded, 5% by default; the same users):
                      validation rows for the trainer (runner.valid_data_dir)
    ranking.json      counts, vocabulary sizes, the retrieval run's id space and this run's

--out is written whole (staged, then renamed into place; datasets/movielens/output.py) with a
manifest.json; train/ and valid/ have their own (files, rows, and the ``id_space``: a digest of
the raw tables, the retrieval run's id space, the feature encodings, --negatives,
--valid-fraction and --seed). The retrieval folder is checked first: its manifests,
dataset.json and train.txt present and unchanged, one id space, and that id space the one
preprocess_retrieval.py gives for --raw (else the folder was written from another raw copy or
with other options). Bad input is one line naming the file, exit status 2; a non-empty --out is
refused unless --replace is given. Deterministic given the inputs and --seed.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
warnings.filterwarnings("ignore", message="No ccache found")  # paddle's, on import (models.common.datasets)

from datasets.movielens import preprocess_retrieval, raw  # noqa: E402
from datasets.movielens.make_pretrained_vectors import sample_negatives  # noqa: E402
from datasets.movielens.output import data_folder, id_space, step_artifact  # noqa: E402
from datasets.movielens.preprocess_metaemb import COLUMNS, encodings, pair_features, smallest_vocab  # noqa: E402
from models.common.artifacts import MANIFEST, ArtifactError, manifest_files, read_manifest, save_npz  # noqa: E402

TRAIN = os.path.join("train", "train.txt")


def read_retrieval(folder):
    """-> (dataset.json contents, path of train.txt, id space) of a retrieval folder, checked:
    manifests there, files unchanged, one id space in all of them."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{os.path.join(folder, MANIFEST)}: missing (a retrieval folder is written by "
                                f"datasets/movielens/preprocess_retrieval.py)")
    if not {"dataset.json", TRAIN} <= set(manifest["files"]):
        raise ArtifactError(f"{os.path.join(folder, MANIFEST)}: not a retrieval folder (it holds "
                            f"{manifest.get('kind', '?')}; expected dataset.json and {TRAIN})")
    manifest_files(folder, manifest, "--retrieval", others_allowed=True)  # present, same size
    train = os.path.join(folder, "train")
    train_manifest = read_manifest(train)
    if train_manifest is None:
        raise FileNotFoundError(f"{os.path.join(train, MANIFEST)}: missing (written by preprocess_retrieval.py)")
    manifest_files(train, train_manifest, "--retrieval")
    path = os.path.join(folder, "dataset.json")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        info["max_history"], info["user_raw_id"], info["item_raw_id"]  # noqa: B018 - presence check
    except (ValueError, KeyError) as error:
        raise ArtifactError(f"{path}: not a retrieval dataset.json ({error})") from None
    space = manifest["fingerprints"].get("id_space")
    for name, value in ((os.path.join(train, MANIFEST), train_manifest["fingerprints"].get("id_space")),
                        (path, info.get("id_space"))):
        if value != space:
            raise ArtifactError(f"{name}: id_space {value} differs from {os.path.join(folder, MANIFEST)}'s "
                                f"{space}: files of two runs; write the retrieval folder again")
    return info, os.path.join(folder, TRAIN), space


def training_pairs(train, max_history):
    """-> ([rows, 2] (encoded user, encoded item) of each retrieval training row, [n, 2] every
    (user, item) the split shows: those and the history items). ``train``: the rows
    preprocess_retrieval.build gives (user_id, 4 user fields, hist * max_history, hist_length, item_id)."""
    pairs = train[:, [0, -1]]
    history = train[:, 5:5 + max_history]
    shown = np.stack([np.repeat(train[:, 0], max_history), history.reshape(-1)], axis=1)[history.reshape(-1) > 0]
    return pairs, np.concatenate([pairs, shown])


def ranking_rows(pairs, rated, num_items, negatives, valid_fraction, rng):
    """-> {"train"|"valid": (user, item, label) arrays}: each pair (encoded user, encoded item
    1..num_items) labelled 1 with ``negatives`` items labelled 0 that the user has no training
    interaction with (``rated``: the set of user * num_items + item - 1), drawn in proportion to
    their training count^0.75 (the retrieval models' popularity negatives: a retriever's
    candidates are popular items, which uniform negatives would teach the ranker nothing about);
    a seeded ``valid_fraction`` of the pairs,
    with their negatives, is the validation part. Rows of each part in a seeded random order."""
    held = int(round(len(pairs) * valid_fraction))
    if not 0 < held < len(pairs):
        raise ValueError(f"--valid-fraction {valid_fraction} of {len(pairs)} training rows leaves no validation "
                         f"or no training rows")
    is_valid = np.zeros(len(pairs), dtype=bool)
    is_valid[rng.permutation(len(pairs))[:held]] = True
    counts = np.bincount(pairs[:, 1] - 1, minlength=num_items).astype(np.float64)
    neg_users, neg_items = sample_negatives(pairs - [0, 1], rated, num_items, negatives, rng, counts ** 0.75)
    neg_valid = np.repeat(is_valid, negatives)  # each positive's negatives follow it into its part
    parts = {}
    for name, pos, neg in (("train", ~is_valid, ~neg_valid), ("valid", is_valid, neg_valid)):
        user = np.concatenate([pairs[pos, 0], neg_users[neg]])
        item = np.concatenate([pairs[pos, 1], neg_items[neg] + 1])
        label = np.concatenate([np.ones(pos.sum(), np.int64), np.zeros(neg.sum(), np.int64)])
        order = rng.permutation(len(label))
        parts[name] = user[order], item[order], label[order]
    return parts


def run(raw_dir, retrieval_dir, out_dir, negatives=4, valid_fraction=0.05, seed=2021, title_vocab=20001,
        replace=False, command=None):
    """Writes ``out_dir`` (see the module docstring); -> the stats written to ranking.json."""
    if negatives < 1:
        raise ValueError(f"--negatives must be at least 1, got {negatives}")
    if not 0 < valid_fraction < 1:
        raise ValueError(f"--valid-fraction must be between 0 and 1, got {valid_fraction}")
    with step_artifact(out_dir, "movielens ranking rows (retrieval training split + negatives)", replace,
                       command) as art:
        info, _, retrieval_space = read_retrieval(retrieval_dir)
        ratings, users, items = raw.load(raw_dir)
        # the raw copy's split, rebuilt: once its id space is the folder's, its rows are train.txt's
        train, _, _, expected = preprocess_retrieval.preprocess(raw_dir, info["max_history"])
        if retrieval_space != expected:
            raise ArtifactError(f"{os.path.join(retrieval_dir, MANIFEST)}: id_space {retrieval_space} is not the one "
                                f"of --raw {raw_dir} ({expected}): that retrieval folder was written from another raw "
                                f"copy or with other options; write it again from this one")
        user_raw, item_raw = np.array(info["user_raw_id"], np.int64), np.array(info["item_raw_id"], np.int64)
        num_items = len(item_raw) - 1
        pairs, seen = training_pairs(train, info["max_history"])
        # What the training split shows a user with is no negative; the held-out item may be one,
        # as any item a user has not interacted with yet (knowing it would be reading the test split).
        rated = set((seen[:, 0] * num_items + seen[:, 1] - 1).tolist())
        parts = ranking_rows(pairs, rated, num_items, negatives, valid_fraction, np.random.default_rng(seed))
        space = id_space("ranking", raw.digest(ratings, users, items), retrieval=retrieval_space,
                         encodings=encodings(users, items, title_vocab), negatives=negatives,
                         valid_fraction=valid_fraction, seed=seed)
        columns = {}
        for name, (user, item, label) in parts.items():
            columns[name] = {"label": label, **pair_features(user_raw[user], item_raw[item], users, items, title_vocab)}
            os.makedirs(os.path.join(art.path, name))
            save_npz(os.path.join(art.path, name, f"{name}.npz"), {c: columns[name][c] for c in COLUMNS},
                     compress=True)
            data_folder(art, name, f"movielens ranking {name} rows", {f"{name}.npz": len(label)}, space)
        stats = {"source": f"{raw.detect(raw_dir)} at {os.path.abspath(raw_dir)}",
                 "retrieval": os.path.abspath(retrieval_dir), "retrieval_id_space": retrieval_space,
                 "negatives": negatives, "valid_fraction": valid_fraction, "seed": seed,
                 "positives": {name: int(label.sum()) for name, (_, _, label) in parts.items()},
                 "rows": {name: int(len(label)) for name, (_, _, label) in parts.items()},
                 "smallest_vocab": smallest_vocab({c: np.concatenate([columns[n][c] for n in parts])
                                                   for c in ("item_id", "user_id", "title", "occupation")})}
        with open(os.path.join(art.path, "ranking.json"), "w", encoding="utf-8") as f:
            json.dump({**stats, "id_space": space}, f, indent=1, sort_keys=True)
        art.fingerprints["id_space"] = space
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="the raw ml-100k or ml-1m copy --retrieval was written from")
    parser.add_argument("--retrieval", required=True, help="the retrieval folder (preprocess_retrieval.py's --out)")
    parser.add_argument("--out", required=True, help="output folder (train/, valid/, ranking.json)")
    parser.add_argument("--negatives", type=int, default=4, help="negatives per training positive (default 4)")
    parser.add_argument("--valid-fraction", type=float, default=0.05, help="positives held out for validation")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--title-vocab", type=int, default=20001, help="title word ids (0 = rare word)")
    parser.add_argument("--replace", action="store_true",
                        help="replace what --out holds (else a non-empty --out is refused)")
    args = parser.parse_args(argv)
    try:
        stats = run(args.raw, args.retrieval, args.out, args.negatives, args.valid_fraction, args.seed, args.title_vocab,
                    args.replace, command=None if argv is None else [os.path.basename(__file__), *argv])
    except (ValueError, FileNotFoundError) as error:  # ArtifactError and RawFormatError are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{stats['positives']['train']} + {stats['positives']['valid']} positives with {args.negatives} negatives "
          f"each -> {stats['rows']['train']} training, {stats['rows']['valid']} validation rows; written to {args.out}")


if __name__ == "__main__":
    main()

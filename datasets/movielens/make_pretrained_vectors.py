"""Pretrained user/item vectors from MovieLens and the (user, item) pairs the pretrained two-tower
model (models/recall/pretrained_dssm) fine-tunes on.

    python datasets/movielens/make_pretrained_vectors.py --raw DIR --out OUT [--dim 128] [--negatives 4]
                                                         [--seed 2021] [--format npy|text] [--replace]

1. Every rating is an interaction. Each user's interactions sorted by time: the last one is the
   test item, the one before it the validation item, the rest are training interactions
   (users with fewer than 3 interactions keep all of them for training).
2. Item vectors: truncated SVD of the positive pointwise mutual information (PPMI) of item
   co-occurrence in the users' *training* histories, scaled by sqrt(singular value)
   (Levy & Goldberg's factorisation view of word2vec); an item with no training interaction gets
   a zero vector. User vectors: the mean of the user's training items' vectors (for a training
   positive, without that item's own vector). Nothing held out goes into a vector.
3. Pairs: each training (validation) interaction is a positive, with ``--negatives`` items the
   user never interacted with, drawn uniformly (seeded), as negatives.

Writes OUT/train/ and OUT/valid/ (rows ``label,u_1..u_d,i_1..i_d`` as .npy shards or text),
OUT/vectors/{users,items}.npy with {users,items}.txt (one id per line, same order), and
OUT/interactions/{train,valid,test}.csv (user_id,item_id).

OUT is written whole (staged, then renamed into place; datasets/movielens/output.py) with a
manifest.json; train/, valid/, vectors/ and interactions/ have their own manifests (files, rows,
and the ``id_space``: a digest of the raw tables, the user and item ids in vector order, --dim,
--negatives, --seed and --format, equal in every folder of one run). A non-empty OUT is refused
(exit status 2) unless --replace is given.
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from datasets.movielens import raw  # noqa: E402
from datasets.movielens.output import data_folder, id_space, step_artifact  # noqa: E402
from models.common.artifacts import ArtifactError  # noqa: E402

KINDS = {"train": "pretrained-vector training pairs", "valid": "pretrained-vector validation pairs",
         "vectors": "pretrained user and item vectors", "interactions": "user-item interactions split by time"}


def split_by_time(ratings):
    """-> (train, valid, test) frames of user_id,item_id: last item test, the one before valid."""
    ratings = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    from_end = ratings.groupby("user_id").cumcount(ascending=False).to_numpy()
    enough = ratings.groupby("user_id")["item_id"].transform("size").to_numpy() >= 3
    pairs = ratings[["user_id", "item_id"]]
    return (pairs[~enough | (from_end >= 2)].reset_index(drop=True),
            pairs[enough & (from_end == 1)].reset_index(drop=True),
            pairs[enough & (from_end == 0)].reset_index(drop=True))


def ppmi_svd_vectors(train, item_ids, dim):
    """Item vectors [items, dim] from the PPMI of co-occurrence in the users' training histories."""
    users = pd.Index(np.unique(train.user_id))
    items = pd.Index(item_ids)
    x = np.zeros((len(users), len(items)), dtype=np.float32)
    x[users.get_indexer(train.user_id), items.get_indexer(train.item_id)] = 1.0
    counts = x.T @ x  # co-occurrence (diagonal: item frequency)
    np.fill_diagonal(counts, 0.0)
    total, marginal = counts.sum(), counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * total / np.outer(marginal, marginal))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
    u, s, _ = np.linalg.svd(ppmi, hermitian=True)
    k = min(dim, len(s))
    vectors = np.zeros((len(items), dim), dtype=np.float32)
    vectors[:, :k] = u[:, :k] * np.sqrt(s[:k])
    return vectors


def history_sums(train, user_ids, item_ids, item_vectors):
    """-> (sum of each user's training items' vectors [users, dim], number of them [users])."""
    users, items = pd.Index(user_ids), pd.Index(item_ids)
    sums = np.zeros((len(users), item_vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, users.get_indexer(train.user_id), item_vectors[items.get_indexer(train.item_id)])
    return sums, np.bincount(users.get_indexer(train.user_id), minlength=len(users))




def sample_negatives(positives, seen, num_items, negatives, rng, weights=None):
    """For each positive (user index, item index) ``negatives`` item indices the user has not
    interacted with (``seen``: set of user * num_items + item), drawn uniformly or in proportion
    to ``weights`` [num_items]; vectorised rejection sampling."""
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    draw = lambda n: rng.choice(num_items, size=n, p=p) if p is not None else rng.integers(0, num_items, size=n)  # noqa: E731
    users = np.repeat(positives[:, 0], negatives)
    items = draw(len(users))
    seen = np.fromiter(seen, dtype=np.int64)
    for _ in range(100):
        clash = np.isin(users * num_items + items, seen)
        if not clash.any():
            return users, items
        items[clash] = draw(int(clash.sum()))
    raise ValueError("could not draw negatives: some users interacted with almost every item")


def pair_rows(pairs, negatives, seen, users, items, history, item_vec, rng, in_history):
    """float32 rows label, user vector, item vector: the positives and their negatives, mixed.

    The user vector of a pair is the mean of the user's training history *without the pair's
    item*: for a training positive (``in_history``) its own vector is left out, as at serving
    time, where the candidate is never in the history (else a positive would be recognisable by
    its share in the mean)."""
    sums, counts = history
    positives = np.stack([users.get_indexer(pairs.user_id), items.get_indexer(pairs.item_id)], axis=1)
    neg_users, neg_items = sample_negatives(positives, seen, len(items), negatives, rng)
    u = np.concatenate([positives[:, 0], neg_users])
    i = np.concatenate([positives[:, 1], neg_items])
    label = np.concatenate([np.ones(len(positives)), np.zeros(len(neg_users))])
    own = np.concatenate([np.full(len(positives), in_history), np.zeros(len(neg_users), dtype=bool)])
    own &= counts[u] > 1
    user_vec = (sums[u] - own[:, None] * item_vec[i]) / np.maximum(counts[u] - own, 1)[:, None]
    order = rng.permutation(len(label))  # mixed, so that a held-out tail is a fair sample too
    return np.column_stack([label[order], user_vec[order], item_vec[i[order]]]).astype(np.float32)


def write_rows(folder, rows, fmt):
    """-> the file's name in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    if fmt == "npy":
        np.save(os.path.join(folder, "part-0.npy"), rows)
        return "part-0.npy"
    np.savetxt(os.path.join(folder, "part-0.txt"), rows, fmt="%.6g", delimiter=",")
    return "part-0.txt"


def write_dataset(out, train, valid, test, user_ids, item_ids, item_vec, negatives, seed, fmt):
    """The layout the model's configs and scripts read (see the module docstring), into the folder
    ``out``; -> {folder: {file: rows}}."""
    rng = np.random.default_rng(seed)
    written = {}
    users, items = pd.Index(user_ids), pd.Index(item_ids)
    everything = pd.concat([train, valid, test])
    seen = set((users.get_indexer(everything.user_id) * len(items) + items.get_indexer(everything.item_id)).tolist())
    history = history_sums(train, user_ids, item_ids, item_vec)
    for name, pairs in (("train", train), ("valid", valid)):
        rows = pair_rows(pairs, negatives, seen, users, items, history, item_vec, rng, in_history=name == "train")
        written[name] = {write_rows(os.path.join(out, name), rows, fmt): len(rows)}
    user_vec = (history[0] / np.maximum(history[1], 1)[:, None]).astype(np.float32)
    os.makedirs(os.path.join(out, "vectors"), exist_ok=True)
    written["vectors"] = {}
    for name, ids, vectors in (("users", user_ids, user_vec), ("items", item_ids, item_vec)):
        np.save(os.path.join(out, "vectors", f"{name}.npy"), vectors)
        np.savetxt(os.path.join(out, "vectors", f"{name}.txt"), np.asarray(ids), fmt="%d")
        written["vectors"].update({f"{name}.npy": len(ids), f"{name}.txt": len(ids)})
    os.makedirs(os.path.join(out, "interactions"), exist_ok=True)
    written["interactions"] = {}
    for name, frame in (("train", train), ("valid", valid), ("test", test)):
        frame.to_csv(os.path.join(out, "interactions", f"{name}.csv"), index=False)
        written["interactions"][f"{name}.csv"] = len(frame)  # rows under the header line
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", required=True, help="raw MovieLens folder (ml-100k or ml-1m)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--format", choices=("npy", "text"), default="npy")
    parser.add_argument("--replace", action="store_true", help="replace what --out holds (else a non-empty --out is refused)")
    args = parser.parse_args(argv)
    try:
        with step_artifact(args.out, "movielens pretrained vectors and pairs", args.replace,
                           command=None if argv is None else [os.path.basename(__file__), *argv]) as art:
            ratings, users, items = raw.load(args.raw)
            train, valid, test = split_by_time(ratings)
            user_ids, item_ids = np.sort(users.user_id.to_numpy()), np.sort(items.item_id.to_numpy())
            space = id_space("pretrained", raw.digest(ratings, users, items), user_ids=user_ids.tolist(),
                             item_ids=item_ids.tolist(), dim=args.dim, negatives=args.negatives, seed=args.seed,
                             format=args.format)
            item_vec = ppmi_svd_vectors(train, item_ids, args.dim)
            written = write_dataset(art.path, train, valid, test, user_ids, item_ids, item_vec, args.negatives,
                                    args.seed, args.format)
            for folder, files in written.items():
                data_folder(art, folder, f"movielens {KINDS[folder]}", files, space)
            art.fingerprints["id_space"] = space
    except (ArtifactError, raw.RawFormatError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{raw.detect(args.raw)}: {len(train)} training, {len(valid)} validation, {len(test)} test interactions; "
          f"{len(user_ids)} users, {len(item_ids)} items, {args.dim}-d vectors -> {args.out}")


if __name__ == "__main__":
    main()

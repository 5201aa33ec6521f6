"""Nearest-neighbour retrieval over exported tower outputs (export.py), and its evaluation.

    python models/recall/pretrained_dssm/retrieve.py --export OUT --top-n 10 [--users 3,7] [--index flat|hnsw]
    python models/recall/pretrained_dssm/retrieve.py --export OUT --test interactions/test.csv \\
        --train interactions/train.csv [--index hnsw] [--json FILE] [--plot FILE.svg]

A faiss index of ``item_keys.npy`` (exact inner product by default, HNSW as an option) answers
top-N queries with ``user_queries.npy``: the inner product ranks items as the model's score does.
Without --test: prints each asked user's top N item ids (all users: written to OUT/top<N>.csv).
With --test (user_id,item_id: one held-out item per user): Hit, Recall, NDCG and MRR at 10, 50 and
100 for the model and for the most-popular items of --train, and with HNSW its recall against
exact search.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", ".."))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models.common.artifacts import ArtifactError, manifest_files, read_manifest, write_json  # noqa: E402
from models.common.retrieval import evaluate, search, write_recall_plot  # noqa: E402

KS = (10, 50, 100)


def load_export(folder):
    """The users' queries and the items' keys of one export (checked against its manifest: a
    folder export.py did not write, or wrote only in part, is refused)."""
    try:
        manifest = read_manifest(folder)
        if manifest is None:
            raise ArtifactError(f"{folder} has no manifest.json: not a folder export.py wrote")
        files = {os.path.basename(f) for f in manifest_files(folder, manifest, "--export", others_allowed=True)}
        missing = sorted({"users.txt", "user_queries.npy", "items.txt", "item_keys.npy"} - files)
        if missing:
            raise ArtifactError(f"{folder} has no {missing[0]} (run export.py with both users and items first)")
        exported = {"user_ids": np.loadtxt(os.path.join(folder, "users.txt"), dtype=np.int64, ndmin=1),
                    "queries": np.load(os.path.join(folder, "user_queries.npy")),
                    "item_ids": np.loadtxt(os.path.join(folder, "items.txt"), dtype=np.int64, ndmin=1),
                    "keys": np.load(os.path.join(folder, "item_keys.npy"))}
    except (OSError, ValueError) as error:
        sys.exit(f"error: --export {folder}: {error}")
    if len(exported["queries"]) != len(exported["user_ids"]) or len(exported["keys"]) != len(exported["item_ids"]):
        sys.exit(f"error: --export {folder}: ids and vectors do not match in number")
    return exported


def rows_of(ids, wanted, what):
    position = pd.Index(ids).get_indexer(wanted)
    if (position < 0).any():
        sys.exit(f"error: {what}: id {np.asarray(wanted)[position < 0][0]} is not among the exported ids")
    return position


def evaluate_interactions(exported, test_path, train_path, index):
    test = pd.read_csv(test_path)
    train = pd.read_csv(train_path)
    rows = rows_of(exported["user_ids"], test.user_id.to_numpy(), f"--test {test_path}")
    rows_of(exported["item_ids"], test.item_id.to_numpy(), f"--test {test_path}")  # known items only
    # training interactions per item id; -1 for ids that are no exported item (they never rank)
    count = np.full(int(exported["item_ids"].max()) + 1, -1.0)
    known = train.item_id[train.item_id.isin(exported["item_ids"])].to_numpy()
    count[exported["item_ids"]] = np.bincount(known, minlength=len(count))[exported["item_ids"]]
    return evaluate({"user_emb": exported["queries"][rows], "targets": test.item_id.to_numpy(),
                     "item_emb": exported["keys"], "item_ids": exported["item_ids"]}, count, KS, index)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="folder written by export.py")
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--users", help="comma-separated user ids (default: all)")
    parser.add_argument("--index", choices=("flat", "hnsw"), default="flat")
    parser.add_argument("--test", help="held-out interactions user_id,item_id to evaluate on")
    parser.add_argument("--train", help="training interactions (for the most-popular baseline)")
    parser.add_argument("--json", help="write the metrics here (default OUT/retrieval_metrics.json)")
    parser.add_argument("--plot", help="write Recall@K against K as SVG here")
    args = parser.parse_args(argv)
    json_path = args.json or (os.path.join(args.export, "retrieval_metrics.json") if args.test else None)
    for path in [p for p in (json_path, args.plot) if p]:  # before any work, not after it
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            sys.exit(f"error: {path}: cannot write into {folder}")
    exported = load_export(args.export)
    if not 1 <= args.top_n <= len(exported["item_ids"]):
        sys.exit(f"error: --top-n must be 1 .. {len(exported['item_ids'])} (the exported items), got {args.top_n}")
    if args.test:
        if len(exported["item_ids"]) < max(KS):
            sys.exit(f"error: --test reports Hit/NDCG/MRR at {', '.join(map(str, KS))}, but the export has only "
                     f"{len(exported['item_ids'])} items")
        if not args.train:
            sys.exit("error: --test needs --train (the most-popular baseline counts training interactions)")
        values, details = evaluate_interactions(exported, args.test, args.train, args.index)
        for k in KS:
            print(f"@{k}: hit {values[f'hit@{k}']:.4f} ndcg {values[f'ndcg@{k}']:.4f} mrr {values[f'mrr@{k}']:.4f} | "
                  f"most popular: hit {values[f'popular_hit@{k}']:.4f}"
                  + (f" | hnsw recall vs exact {values[f'hnsw_recall_vs_exact@{k}']:.4f}" if args.index == "hnsw" else ""))
        write_json(json_path, {"metrics": values, "details": details})
        print(f"wrote {json_path}")
        if args.plot:
            write_recall_plot(args.plot, {"model": details["recall_curve"], "most popular": details["popular_recall_curve"]})
        return values
    rows = np.arange(len(exported["user_ids"])) if not args.users else \
        rows_of(exported["user_ids"], [int(u) for u in args.users.split(",")], "--users")
    top, _ = search(exported["keys"], exported["queries"][rows], args.top_n, args.index)
    items = exported["item_ids"][top]
    if args.users:
        for user, ranked in zip(exported["user_ids"][rows], items):
            print(f"user {user}: {' '.join(str(i) for i in ranked)}")
    else:
        path = os.path.join(args.export, f"top{args.top_n}.csv")
        pd.DataFrame({"user_id": exported["user_ids"], "items": [" ".join(map(str, r)) for r in items]}).to_csv(path, index=False)
        print(f"wrote the top {args.top_n} items of {len(rows)} users to {path}")
    return items


if __name__ == "__main__":
    main()

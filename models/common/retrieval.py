"""Retrieval evaluation of a two-tower model (the matching paradigm's protocol, run by
tools/infer.py): export the test users' and all items' embeddings, search the items with faiss
(exact inner product, or HNSW), score the held-out items, compare with the most-popular-items
baseline on the same split, and plot Recall@K against K.

With cosine similarity the exported vectors are L2-normalised, so inner product = cosine.
"""
import json
import logging
import os
import time

import numpy as np
import paddle

from models.common.data.loader import create_dataset, to_tensors
from models.common.datasets.movielens import dataset_info
from models.common.data.columns import refuse_rows
from models.common.evaluation import Evaluation, test_rows
from models.common.loading import load_reader
from models.common.spec import ConfigError
from models.common.metrics import retrieval_metrics


def export_embeddings(model, dataset, batch_size, num_items):
    """-> dict: user vectors [U, d] of the dataset's rows, their user ids and held-out items, and
    item vectors [num_items - 1, d] of ids 1 .. num_items - 1 (0 is padding) with those ids."""
    model.eval()
    users, targets, user_ids = [], [], []
    with paddle.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = dataset.take(np.arange(start, min(start + batch_size, len(dataset))))
            users.append(model.user_embedding(to_tensors(batch)).numpy())
            targets.append(np.asarray(batch["item_id"]))
            user_ids.append(np.asarray(batch["user_id"]))
        item_ids = np.arange(1, num_items, dtype=np.int64)
        items = [model.item_embedding(paddle.to_tensor(item_ids[s:s + 4096])).numpy()
                 for s in range(0, len(item_ids), 4096)]
    return {"user_emb": np.concatenate(users).astype("float32"), "user_ids": np.concatenate(user_ids),
            "targets": np.concatenate(targets), "item_emb": np.concatenate(items).astype("float32"),
            "item_ids": item_ids}


def check_held_out(train, test):
    """Leave-last-out: a user's held-out item is none of the items of their training rows (else the
    model is scored on what it was trained on)."""
    width = int(max(train.column("item_id").max(initial=0), test.column("item_id").max(initial=0))) + 1
    seen = train.column("user_id").astype(np.int64) * width + train.column("item_id")
    held = test.column("user_id").astype(np.int64) * width + test.column("item_id")
    refuse_rows(test, np.isin(held, seen), f"the user's held-out item is one of their training rows' items "
                                           f"({train.files[0]}...): the splits overlap")


def search(item_emb, user_emb, k, index="flat", hnsw_m=32, ef_search=128, ef_construction=200):
    """Top-k rows of ``item_emb`` by inner product for each row of ``user_emb`` -> (rows [U, k], seconds)."""
    if not 1 <= k <= len(item_emb):
        raise ValueError(f"top {k} of {len(item_emb)} items: k must be 1 .. the number of items")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
    import faiss  # imported here: only evaluation needs it

    start = time.perf_counter()
    item_emb = np.asarray(item_emb, dtype=np.float64)
    user_emb = np.asarray(user_emb, dtype=np.float64)
    if index == "flat":
        idx = faiss.IndexFlatIP(item_emb.shape[1])
    elif index == "hnsw":
        # An HNSW graph finds poor neighbours under inner product when the keys' norms differ
        # (inner product is no metric). The standard reduction to L2 (Bachrach et al., 2014):
        # append sqrt(M^2 - |key|^2) to every key and 0 to every query; the L2-nearest key then
        # has the largest inner product. Normalised (cosine) keys get 0 and stay as they are.
        norms = (item_emb ** 2).sum(axis=1)
        item_emb = np.hstack([item_emb, np.sqrt(np.maximum(norms.max() - norms, 0.0))[:, None]])
        user_emb = np.hstack([user_emb, np.zeros((len(user_emb), 1))])
        idx = faiss.IndexHNSWFlat(item_emb.shape[1], hnsw_m)
        idx.hnsw.efConstruction = ef_construction
        idx.hnsw.efSearch = max(ef_search, k)
    else:
        raise ValueError(f"unknown index {index!r}; expected flat or hnsw")
    idx.add(np.ascontiguousarray(item_emb, dtype="float32"))
    _, rows = idx.search(np.ascontiguousarray(user_emb, dtype="float32"), k)
    return rows, time.perf_counter() - start


def recall_curve(ranked, targets, max_k):
    """Recall@k (= Hit@k with one held-out item) for k = 1 .. max_k."""
    found = np.asarray(ranked)[:, :max_k] == np.asarray(targets).reshape(-1, 1)
    return np.cumsum(found.sum(axis=0)) / max(len(targets), 1)


def overlap(approx, exact):
    """Mean fraction of each user's exact top-k found by the approximate search."""
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(e)) / k for a, e in zip(approx, exact)]))


def most_popular(item_count, num_users, k):
    """The baseline: the k items with most training interactions (id order breaks ties), for everyone."""
    count = np.asarray(item_count, dtype=np.float64).copy()
    count[0] = -1  # padding
    top = np.argsort(-count, kind="stable")[:k]
    return np.tile(top, (num_users, 1))


def evaluate(exported, item_count, ks=(10, 50, 100), index="flat", hnsw_m=32, ef_search=128):
    """Metrics of the model (exact search, and HNSW with its recall against exact when asked) and
    of the most-popular baseline -> (flat metrics dict, details dict with curves and timings)."""
    max_k = max(ks)
    targets = exported["targets"]
    rows, seconds = search(exported["item_emb"], exported["user_emb"], max_k, "flat")
    ranked = exported["item_ids"][rows]
    values = retrieval_metrics(ranked, targets, ks)
    popular = most_popular(item_count, len(targets), max_k)
    values.update({f"popular_{k}": v for k, v in retrieval_metrics(popular, targets, ks).items()})
    details = {"users": int(len(targets)), "items": int(len(exported["item_ids"])), "exact_search_seconds": seconds,
               "recall_curve": recall_curve(ranked, targets, max_k).tolist(),
               "popular_recall_curve": recall_curve(popular, targets, max_k).tolist()}
    if index == "hnsw":
        approx_rows, approx_seconds = search(exported["item_emb"], exported["user_emb"], max_k, "hnsw", hnsw_m, ef_search)
        approx = exported["item_ids"][approx_rows]
        values.update({f"hnsw_{k}": v for k, v in retrieval_metrics(approx, targets, ks).items()})
        for k in ks:
            values[f"hnsw_recall_vs_exact@{k}"] = overlap(approx[:, :k], ranked[:, :k])
        details.update({"hnsw_search_seconds": approx_seconds, "hnsw_m": hnsw_m, "hnsw_ef_search": ef_search})
    return values, details


def write_recall_plot(path, curves, title="Recall@K"):
    """An SVG line chart of Recall@K against K: ``curves`` {label: [recall@1, recall@2, ...]}."""
    width, height, left, right, top, bottom = 640, 400, 60, 170, 30, 45
    max_k = max(len(c) for c in curves.values())
    max_y = max(max(c) for c in curves.values()) or 1.0
    max_y = min(1.0, np.ceil(max_y * 10) / 10)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(k):
        return left + plot_w * (k - 1) / max(max_k - 1, 1)

    def y(v):
        return top + plot_h * (1 - v / max_y)

    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>']
    for i in range(6):
        v = max_y * i / 5
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" stroke="#ddd"/>')
    for k in sorted({1, *range(10, max_k + 1, max(10, max_k // 10))}):
        out.append(f'<text x="{x(k):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{k}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">K</text>')
    for n, (label, curve) in enumerate(curves.items()):
        color = colors[n % len(colors)]
        points = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in enumerate(curve, 1))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        out.append(f'<text x="{left + plot_w + 10}" y="{top + 16 * (n + 1)}" fill="{color}">{label}</text>')
    out.append("</svg>")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


class RetrievalEvaluation(Evaluation):
    """Per trained model: export the embeddings, search, score; writes the embeddings, a retrieval
    JSON and the Recall@K plot into the output folder."""

    def __init__(self, dygraph_model, config, log):
        super().__init__(dygraph_model, config, log)
        self.dataset = self.read("runner.test_data_dir", test_rows(config))
        items = len(dataset_info(config)["item_count"]) - 1  # id 0 is padding
        top_k = max(config.get("hyper_parameters.retrieval.top_k"))
        if top_k > items:
            raise ConfigError(f"hyper_parameters.retrieval.top_k: K = {top_k} is more than the {items} items of the "
                              f"catalog ({config.get('hyper_parameters.dataset_info_path')})")
        check_held_out(create_dataset(load_reader(config, "train"), config, "train"), self.dataset)

    def evaluate(self, model, config, label, output_dir):
        hp = lambda key: config.get(f"hyper_parameters.{key}")  # noqa: E731
        info = dataset_info(config)
        batch_size = config.get("runner.infer_batch_size") or config.get("runner.train_batch_size")
        model.eval()
        with paddle.no_grad():
            exported = export_embeddings(model, self.dataset, batch_size, len(info["item_count"]))
        values, details = evaluate(exported, info["item_count"], sorted(set(hp("retrieval.top_k"))),
                                   str(hp("retrieval.index")).lower(), hp("retrieval.hnsw_m"),
                                   hp("retrieval.hnsw_ef_search"))
        folder = os.path.join(output_dir, f"embeddings_{label}")
        os.makedirs(folder, exist_ok=True)
        raw_users, raw_items = np.asarray(info.get("user_raw_id", [])), np.asarray(info.get("item_raw_id", []))
        for name, key in (("user_emb", "user_emb"), ("item_emb", "item_emb"), ("user_ids", "user_ids"),
                          ("item_ids", "item_ids"), ("test_items", "targets")):
            np.save(os.path.join(folder, f"{name}.npy"), exported[key])
        if len(raw_users) and len(raw_items):  # encoded id -> MovieLens id
            np.save(os.path.join(folder, "user_raw_ids.npy"), raw_users[exported["user_ids"]])
            np.save(os.path.join(folder, "item_raw_ids.npy"), raw_items[exported["item_ids"]])
        name = self.dm.model_name()
        write_recall_plot(os.path.join(output_dir, f"recall_at_k_{label}.svg"),
                          {name: details["recall_curve"], "most popular": details["popular_recall_curve"]},
                          title=f"Recall@K, {name} vs most popular ({label})")
        with open(os.path.join(output_dir, f"retrieval_{label}.json"), "w", encoding="utf-8") as f:
            json.dump({"model": name, "mode": str(hp("mode")).lower(), "run": label, "metrics": values, **details},
                      f, indent=1)
        self.log(f"retrieval: {details['users']} users x {details['items']} items, exact search "
                 f"{details['exact_search_seconds']:.3f} s; embeddings in {os.path.basename(folder)}")
        return values

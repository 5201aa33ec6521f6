"""Serving exports (tools/export.py's folders): load them, check requests against their manifests,
and answer rank / recall / recall-then-rank. tools/serve.py puts HTTP in front of this.

A request's rows are JSON objects {feature name: value}: an id is an integer in [0, vocab_size),
a sequence a list of such ids (at most max_len; its ``<name>_length`` is derived), a dense value a
finite number or a list of ``dim`` numbers. A missing or unknown feature, a wrong type or an id
outside its vocabulary is a ``RequestError`` naming the field - nothing reaches a predictor
unchecked.
"""
import math
import os

import numpy as np

from models.common.artifacts import ArtifactError, manifest_files, read_manifest
from models.common.export import CATALOG, TABLES, Graph, import_faiss


class RequestError(ValueError):
    """A request the service refuses: ``status`` (4xx) and a message naming the field."""

    def __init__(self, message, status=422):
        super().__init__(message)
        self.status = status


class ExportError(ArtifactError):
    """A folder the service refuses to load (one line: the folder and why)."""


def _integer(value, field):
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{field}: expected an integer id, got {value!r}")
    return value


def _number(value, field):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{field}: expected a finite number, got {value!r}")
    return float(value)


def _id(value, field, vocab_size):
    if not 0 <= _integer(value, field) < vocab_size:
        raise RequestError(f"{field}: id {value} is outside the vocabulary [0, {vocab_size})")
    return value


def client_features(inputs):
    """The features a client sends for ``inputs`` (a graph's manifest entry): all but derived lengths."""
    return [name for name, spec in inputs.items() if spec["kind"] != "length"]


def columns_of(rows, inputs, where="rows"):
    """JSON rows -> {input column: array}, every value checked against ``inputs``."""
    if not isinstance(rows, list) or not rows:
        raise RequestError(f"{where}: expected a non-empty list of objects {{feature: value}}")
    wanted = client_features(inputs)
    columns = {}
    for name in wanted:
        spec = inputs[name]
        if spec["kind"] == "sequence":
            columns[name] = np.zeros((len(rows), spec["max_len"]), dtype=np.int64)
            columns[spec["length"]] = np.zeros(len(rows), dtype=np.int64)
        else:
            columns[name] = np.zeros([len(rows)] + spec["shape"][1:], dtype=spec["dtype"])
    for r, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"{where}[{r}]: expected an object {{feature: value}}, got {type(row).__name__}")
        unknown = sorted(set(row) - set(wanted))
        if unknown:
            hint = " (derived from the sequence; do not send it)" if unknown[0] in inputs else ""
            raise RequestError(f"{where}[{r}].{unknown[0]}: unknown feature{hint}; this model reads "
                               f"{', '.join(wanted)}")
        for name in wanted:
            field, spec = f"{where}[{r}].{name}", inputs[name]
            if name not in row:
                raise RequestError(f"{field}: missing feature ({spec['kind']}, {spec['dtype']})")
            value = row[name]
            if spec["kind"] == "sparse":
                columns[name][r] = _id(value, field, spec["vocab_size"])
            elif spec["kind"] == "key":
                columns[name][r] = _id(value, field, 2 ** 63 - 1)
            elif spec["kind"] == "sequence":
                if not isinstance(value, list) or len(value) > spec["max_len"]:
                    raise RequestError(f"{field}: expected a list of at most {spec['max_len']} ids, got {value!r}"[:300])
                columns[name][r, :len(value)] = [_id(v, f"{field}[{i}]", spec["vocab_size"]) for i, v in enumerate(value)]
                columns[spec["length"]][r] = len(value)
            elif len(spec["shape"]) == 1:
                columns[name][r] = _number(value, field)
            else:
                dim = spec["shape"][1]
                if not isinstance(value, list) or len(value) != dim:
                    raise RequestError(f"{field}: expected a list of {dim} numbers")
                columns[name][r] = [_number(v, f"{field}[{i}]") for i, v in enumerate(value)]
    return columns


class LoadedExport:
    """One export folder: its manifest checked (complete, its files as listed), its graphs as
    predictors, its catalog (vectors, ids and faiss index) and feature tables when it has them."""

    def __init__(self, folder, name=None, threads=1):
        folder = os.path.abspath(folder)
        try:
            manifest = read_manifest(folder) if os.path.isdir(folder) else None
        except ArtifactError as error:
            raise ExportError(str(error)) from None
        if manifest is None:
            raise ExportError(f"{folder}: no manifest.json - not a finished export (tools/export.py writes a "
                              f"folder whole, with its manifest)")
        if "serving" not in manifest:
            raise ExportError(f"{folder}: a {manifest.get('kind', '?')!r} folder, not an export of tools/export.py")
        try:
            manifest_files(folder, manifest, "--export", others_allowed=True)  # reads listed files only
        except ArtifactError as error:
            raise ExportError(str(error)) from None
        self.folder, self.manifest, self.serving = folder, manifest, manifest["serving"]
        self.name = name or self.serving["model"]
        self.graphs = {g: Graph(folder, entry, threads) for g, entry in self.serving["graphs"].items()}
        self.catalog = self.tables = None
        if CATALOG in self.serving:
            path = os.path.join(folder, CATALOG)
            self.catalog = {"ids": np.load(os.path.join(path, "ids.npy")),
                            "index": import_faiss().read_index(os.path.join(path, "index.faiss"))}
            for optional in ("raw_ids", "user_raw_ids"):
                if os.path.isfile(os.path.join(path, f"{optional}.npy")):
                    self.catalog[optional] = np.load(os.path.join(path, f"{optional}.npy"))
            self.catalog["position"] = {int(i): p for p, i in enumerate(self.catalog["ids"])}
        if TABLES in self.serving:
            self.tables = {}
            for table, about in self.serving[TABLES].items():
                with np.load(os.path.join(folder, about["file"])) as data:
                    columns = {n: data[n] for n in data.files}
                keys = columns[about["key"]]
                self.tables[table] = {"key": about["key"], "columns": columns,
                                      "row": {int(k): r for r, k in enumerate(keys)}}

    def schema(self):
        """What a client needs: per graph the features it sends and the outputs it gets."""
        graphs = {}
        for name, entry in self.serving["graphs"].items():
            graphs[name] = {"features": {n: {k: v for k, v in entry["inputs"][n].items() if k != "length"}
                                         for n in client_features(entry["inputs"])},
                            "outputs": entry["outputs"]}
        about = {"model": self.serving["model"], "epoch": self.manifest.get("epoch"),
                 "model_config_digest": self.manifest.get("model_config_digest"), "graphs": graphs}
        if self.catalog is not None:
            about["catalog_items"] = int(len(self.catalog["ids"]))
        if self.tables:
            about["tables"] = {t: {"key": v["key"], "rows": len(v["row"])} for t, v in self.tables.items()}
        return about

    def run(self, graph, columns):
        g = self.graphs[graph]
        with g.lock:
            return g.run(columns)

    # ---- answers --------------------------------------------------------------------------
    def rank(self, rows):
        """{output: [score per row]} of the ``rank`` graph."""
        if "rank" not in self.graphs:
            raise RequestError(f"model {self.name}: has no rank graph (it serves {', '.join(self.graphs)})", 404)
        outputs = self.run("rank", columns_of(rows, self.graphs["rank"].inputs))
        return {name: value.reshape(len(rows)).tolist() for name, value in outputs.items()}

    def recall(self, user, k, exclude=None):
        """-> (catalog ids, scores): the ``k`` items of largest inner product with the user's
        vector, the ids in ``exclude`` left out."""
        if self.catalog is None:
            raise RequestError(f"model {self.name}: has no item catalog to recall from", 404)
        items = len(self.catalog["ids"])
        if not 1 <= _integer(k, "k") <= items:
            raise RequestError(f"k: {k} is outside 1 .. {items} (the catalog's items)")
        exclude = [] if exclude is None else exclude
        if not isinstance(exclude, list):
            raise RequestError("exclude: expected a list of item ids")
        skip = {_integer(v, f"exclude[{i}]") for i, v in enumerate(exclude)}
        skip &= set(self.catalog["position"])
        query = self.run("user_tower", columns_of([user], self.graphs["user_tower"].inputs, "user"))
        query = np.ascontiguousarray(next(iter(query.values())), dtype=np.float32)
        found = min(items, k + len(skip))
        scores, rows = self.catalog["index"].search(query, found)
        ids = self.catalog["ids"][rows[0]]
        keep = np.array([int(i) not in skip for i in ids], dtype=bool)
        return ids[keep][:k], scores[0][keep][:k]

    def raw_item_ids(self, ids):
        raw = self.catalog.get("raw_ids")
        return None if raw is None else raw[[self.catalog["position"][int(i)] for i in ids]]

    def table_rows(self, table, keys, field):
        """Rows of the feature table ``table`` for ``keys`` -> ({column: array}, mask of keys found)."""
        t = self.tables[table]
        found = np.array([int(k) in t["row"] for k in keys], dtype=bool)
        rows = np.array([t["row"][int(k)] for k in np.asarray(keys)[found]], dtype=np.int64)
        return {n: c[rows] for n, c in t["columns"].items()}, found


def load_exports(specs, threads=1):
    """``[NAME=]DIR`` strings -> {name: LoadedExport}; two exports under one name are refused."""
    exports = {}
    for spec in specs:
        name, _, folder = spec.rpartition("=") if "=" in spec else (None, None, spec)
        loaded = LoadedExport(folder, name or None, threads)
        if loaded.name in exports:
            raise ExportError(f"--export: two exports named {loaded.name!r} ({exports[loaded.name].folder}, "
                              f"{loaded.folder}); name them NAME=DIR")
        exports[loaded.name] = loaded
    return exports


def recommend(retrieval, ranker, user, k=10, candidates=100, exclude=None):
    """Recall then rank: ``candidates`` items from ``retrieval``'s catalog for ``user``, scored by
    ``ranker``'s rank graph with their features from its tables (joined through the source data's
    raw ids), best first; -> list of {item, raw_item, score, recall_score}. Candidates the ranker
    has no features for follow the ranked ones, in recall order, with score None."""
    if ranker.tables is None or not {"items", "users"} <= set(ranker.tables):
        raise RequestError(f"rank_model: {ranker.name} has no item and user tables to score candidates with", 404)
    if not 1 <= _integer(k, "k") <= _integer(candidates, "candidates"):
        raise RequestError(f"k: {k} must be in 1 .. candidates ({candidates})")
    ids, recall_scores = retrieval.recall(user, candidates, exclude)
    raw_items = retrieval.raw_item_ids(ids)
    raw_items = ids if raw_items is None else raw_items
    user_key = ranker.tables["users"]["key"]
    if user_key not in user or "user_raw_ids" not in retrieval.catalog:
        raise RequestError(f"user.{user_key}: needed to find the user in {ranker.name}'s table")
    raw_user = int(retrieval.catalog["user_raw_ids"][user[user_key]])
    user_row, known_user = ranker.table_rows("users", [raw_user], f"user.{user_key}")
    order, scores = np.arange(len(ids)), np.full(len(ids), np.nan)
    if known_user[0]:
        item_rows, known = ranker.table_rows("items", raw_items, "items")
        if known.any():
            n = int(known.sum())
            columns = {**{c: np.repeat(v, n, axis=0) for c, v in user_row.items()}, **item_rows}
            outputs = ranker.run("rank", {c: columns[c] for c in ranker.graphs["rank"].inputs})
            scores[known] = next(iter(outputs.values())).reshape(-1)
            ranked = np.flatnonzero(known)[np.argsort(-scores[known], kind="stable")]
            order = np.concatenate([ranked, np.flatnonzero(~known)])
    return [{"item": int(ids[i]), "raw_item": int(raw_items[i]),
             "score": None if np.isnan(scores[i]) else float(scores[i]), "recall_score": float(recall_scores[i])}
            for i in order[:k]]


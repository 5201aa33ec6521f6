"""Pretrained-vector two-tower wrapper for the shared runners (BCE, Adam, AUC from the base class),
and its export (tools/export.py, or this folder's export.py). Every export holds the inference
graphs (models/common/export.py): ``rank`` (the score of a user vector and an item vector),
``user_tower`` and ``item_tower`` (the vectors whose inner product ranks items as the score does:
``query`` and ``key``, see net.py). With ``--vectors DIR`` (a folder of pretrained vectors:
``users.npy`` + ``users.txt`` and/or ``items.npy`` + ``items.txt``, one id per line in the same
order; datasets/movielens/make_pretrained_vectors.py writes them) it also holds their tower
outputs ``<side>.npy`` (e.g. 64-d) with the ids ``<side>.txt``, and the search vectors
``user_queries.npy`` / ``item_keys.npy`` (retrieve.py searches them).
"""
import os

import numpy as np
import paddle

from models.common.artifacts import file_fingerprint
from models.common.base_model import BaseDygraphModel
from models.common.export import Served
from models.common.spec import Param, SpecError, positive_ints
from .net import SCORES, PretrainedTwoTower


class DygraphModel(BaseDygraphModel):
    config_spec = {
        "hyper_parameters.tower_dims": positive_ints(help="each tower's ReLU layer sizes"),
        "hyper_parameters.score": Param(str, default="product", choices=SCORES, scoring=True,
                                        help="product: sigmoid(w.(u*i) + b); dot: sigmoid(u.i / T); cosine: "
                                             "sigmoid(cos(u, i) / T)"),
        "hyper_parameters.temperature": Param(float, above=0, default=1.0, scoring=True, help="T of the dot and cosine scores"),
    }

    def create_model(self, config):
        hp = lambda key: config.get(f"hyper_parameters.{key}")  # noqa: E731
        return PretrainedTwoTower(hp("vector_dim"), hp("tower_dims"), hp("score"), hp("temperature"))

    def serving_graphs(self, model, config):
        return {**super().serving_graphs(model, config), "user_tower": Served(model, "user_query", ["user_query"]),
                "item_tower": Served(model, "item_key", ["item_key"])}

    def export_vectors(self, model, config, artifact, vectors, log=print):
        """Write the tower outputs of the vectors in the folder ``vectors`` into ``artifact`` (a
        models.common.artifacts.Artifact: its staging folder, rows and fingerprints; see above)."""
        done = export(model, vectors, artifact.path, config.get("hyper_parameters.vector_dim"), log)
        for side, (ids, _) in done.items():
            for name in (f"{side}.npy", f"{side}.txt", f"{SIDES[side][1]}.npy"):
                artifact.rows[name] = len(ids)
            artifact.fingerprints[f"{side}_vectors"] = file_fingerprint(os.path.join(vectors, f"{side}.npy"))
        return done


SIDES = {"users": ("user_tower", "user_queries"), "items": ("item_tower", "item_keys")}


def read_vectors(folder, side, dim):
    """-> (ids [n] int64, vectors [n, dim] float32) of ``folder/<side>.npy`` + ``.txt``, or None."""
    path, ids_path = os.path.join(folder, f"{side}.npy"), os.path.join(folder, f"{side}.txt")
    if not os.path.isfile(path):
        return None
    vectors = np.load(path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[1] != dim or not np.isfinite(vectors).all():
        raise SpecError(f"{path}: expected finite vectors of shape [n, {dim}] (hyper_parameters.vector_dim), "
                          f"found {vectors.dtype} {vectors.shape}")
    ids = np.loadtxt(ids_path, dtype=np.int64, ndmin=1) if os.path.isfile(ids_path) else np.arange(len(vectors))
    if len(ids) != len(vectors):
        raise SpecError(f"{ids_path}: {len(ids)} ids for {len(vectors)} vectors in {path}")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise SpecError(f"{ids_path}: id {unique[counts > 1][0]} appears {counts[counts > 1][0]} times (line "
                        f"{int(np.flatnonzero(ids == unique[counts > 1][0])[1]) + 1}): one vector per id")
    return ids, vectors.astype(np.float32)


def tower_outputs(tower, vectors, batch_size=8192):
    with paddle.no_grad():
        return np.concatenate([tower(paddle.to_tensor(vectors[i:i + batch_size])).numpy()
                               for i in range(0, len(vectors), batch_size)]) if len(vectors) else vectors


def export(model, folder, out, dim, log=print):
    """Write the outputs of every side found in ``folder`` to ``out``; -> {side: (ids, outputs)}."""
    model.eval()
    done = {}
    for side, (tower_name, search_name) in SIDES.items():
        found = read_vectors(folder, side, dim)
        if found is None:
            continue
        ids, vectors = found
        outputs = tower_outputs(getattr(model, tower_name), vectors)
        with paddle.no_grad():
            t = paddle.to_tensor(outputs)
            search = (model.query(t) if side == "users" else model.key(t)).numpy()
        np.save(os.path.join(out, f"{side}.npy"), outputs)
        np.savetxt(os.path.join(out, f"{side}.txt"), ids, fmt="%d")
        np.save(os.path.join(out, f"{search_name}.npy"), search)
        log(f"{side}: {len(ids)} vectors -> {outputs.shape[1]}-d tower outputs in {out}")
        done[side] = (ids, outputs)
    if not done:
        raise FileNotFoundError(f"--vectors: {folder} holds neither users.npy nor items.npy")
    return done

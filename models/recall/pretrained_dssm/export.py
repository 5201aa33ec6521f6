"""Tower outputs of a trained pretrained-vector two-tower model, and its towers as inference models.

    python models/recall/pretrained_dssm/export.py -m config.yaml --vectors DIR --out OUT [--epoch N] [--jit]

DIR holds ``users.npy`` + ``users.txt`` and/or ``items.npy`` + ``items.txt`` (pretrained vectors,
one id per line in the same order; datasets/movielens/make_pretrained_vectors.py writes them).
For each side present, OUT gets ``<side>.npy`` (the tower outputs, e.g. 64-d) and ``<side>.txt``
(the ids), plus what nearest-neighbour search uses: ``user_queries.npy`` / ``item_keys.npy``, whose
inner product ranks items as the model's score does (see net.py). The checkpoint is the best epoch
of a run with validation data, else the last epoch (``--epoch`` picks another).
``--jit`` also saves the towers with paddle.jit.save as OUT/inference/{user,item}_tower
(.pdmodel/.pdiparams, input [batch, vector_dim] float32), loadable with paddle.jit.load or a
Paddle Inference predictor without this repository's code.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", ".."))

import numpy as np  # noqa: E402
import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
import paddle  # noqa: E402

from tools.infer import epochs_to_evaluate  # noqa: E402
from tools.utils.checkpoint import check_writable, load_checkpoint  # noqa: E402
from tools.utils.config import ConfigError  # noqa: E402
from tools.utils.runtime import USER_ERRORS, parse_args, setup  # noqa: E402

SIDES = {"users": ("user_tower", "user_queries"), "items": ("item_tower", "item_keys")}


def read_vectors(folder, side, dim):
    """-> (ids [n] int64, vectors [n, dim] float32) of ``folder/<side>.npy`` + ``.txt``, or None."""
    path, ids_path = os.path.join(folder, f"{side}.npy"), os.path.join(folder, f"{side}.txt")
    if not os.path.isfile(path):
        return None
    vectors = np.load(path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[1] != dim or not np.isfinite(vectors).all():
        raise ConfigError(f"{path}: expected finite vectors of shape [n, {dim}] (hyper_parameters.vector_dim), "
                          f"found {vectors.dtype} {vectors.shape}")
    ids = np.loadtxt(ids_path, dtype=np.int64, ndmin=1) if os.path.isfile(ids_path) else np.arange(len(vectors))
    if len(ids) != len(vectors):
        raise ConfigError(f"{ids_path}: {len(ids)} ids for {len(vectors)} vectors in {path}")
    return ids, vectors.astype(np.float32)


def tower_outputs(tower, vectors, batch_size=8192):
    with paddle.no_grad():
        return np.concatenate([tower(paddle.to_tensor(vectors[i:i + batch_size])).numpy()
                               for i in range(0, len(vectors), batch_size)]) if len(vectors) else vectors


def export(model, folder, out, dim, jit=False, log=print):
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
    if jit:
        for side, (tower_name, _) in SIDES.items():
            path = os.path.join(out, "inference", tower_name)
            paddle.jit.save(getattr(model, tower_name), path,
                            input_spec=[paddle.static.InputSpec([None, dim], "float32", name="vector")])
            log(f"saved {tower_name} as an inference model: {path}.pdmodel")
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", required=True, help="folder with users.npy/.txt and/or items.npy/.txt")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--epoch", type=int, help="checkpoint epoch (default: best, else last)")
    parser.add_argument("--jit", action="store_true", help="also save the towers with paddle.jit.save")
    args, rest = parser.parse_known_args(argv)
    try:
        ctx = setup(parse_args(__doc__, rest), distributed=False)
        config = ctx.config
        if args.epoch is not None:
            config.set("runner.infer_start_epoch", args.epoch)
            config.set("runner.infer_end_epoch", args.epoch + 1)
        load_path, epochs = epochs_to_evaluate(config)
        check_writable(args.out, "--out")
        model = ctx.dygraph_model.create_model(config)
        load_checkpoint(load_path, epochs[-1], model)
        ctx.log(f"exporting epoch {epochs[-1]} of {load_path}")
        export(model, args.vectors, args.out, config.get("hyper_parameters.vector_dim"), args.jit, ctx.log)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

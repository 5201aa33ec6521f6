"""Export a trained model for serving: python tools/export.py -m config.yaml --out DIR [--epoch N]

Loads the checkpoint tools/infer.py would evaluate (the best epoch of a run with validation, else
the last; ``--epoch`` picks another) and saves what the model serves (models/common/export.py) as
Paddle inference graphs: a ranking or multi-task model its scores (``rank``), a two-tower model its
``user_tower`` and ``item_tower`` plus the item catalog (vectors, ids, a faiss index). Each graph's
inputs are the declared features it reads; manifest.json says them (names, dtypes, shapes,
vocabularies), the outputs, the checkpoint, epoch and model-config digest. A Paddle Inference
predictor must reproduce the model's outputs on the first rows of runner.train_data_dir (within
1e-5) before anything is written. The folder is written as a whole (staged, renamed into place);
a non-empty ``--out`` is refused unless ``--replace``. tools/serve.py serves it. ``--onnx`` also
converts each graph with paddle2onnx and checks it with onnxruntime (optional dependencies).
The pretrained-vector two-tower model also exports the tower outputs of ``--vectors DIR``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py

from tools.infer import epochs_to_evaluate  # noqa: E402
from models.common.data.loader import create_dataset  # noqa: E402
from models.common.export import check_onnx_available, export  # noqa: E402
from models.common.loading import load_reader  # noqa: E402
from models.common.artifacts import fingerprint, sole_artifact  # noqa: E402
from tools.utils.checkpoint import check_model_config, load_checkpoint, read_run  # noqa: E402
from tools.utils.config import ConfigError  # noqa: E402
from tools.utils.runtime import USER_ERRORS, add_config_arguments, setup  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--epoch", type=int, help="checkpoint epoch (default: best, else last)")
    parser.add_argument("--replace", action="store_true", help="replace what --out holds (else a non-empty --out "
                                                               "is refused)")
    parser.add_argument("--vectors", help="the pretrained two-tower model: also export the tower outputs of this "
                                          "folder's users.npy / .txt and/or items.npy / .txt")
    parser.add_argument("--onnx", action="store_true", help="also convert each graph to ONNX (paddle2onnx) and check "
                                                            "it with onnxruntime (both optional dependencies)")
    parser.add_argument("--sample-rows", type=int, default=256, help="rows of runner.train_data_dir the parity "
                                                                     "check runs (default 256)")
    args = parser.parse_args(argv)
    try:
        ctx = setup(args, distributed=False)
        config, dm = ctx.config, ctx.dygraph_model
        if args.vectors and not hasattr(dm, "export_vectors"):
            raise ConfigError(f"--vectors: {dm.model_name()} exports no vectors (only the pretrained two-tower model)")
        missing = args.onnx and check_onnx_available()
        if missing:
            raise ConfigError(f"--onnx: {missing}")
        if args.epoch is not None:
            config.set("runner.infer_start_epoch", args.epoch)
            config.set("runner.infer_end_epoch", args.epoch + 1)
        load_path, epochs = epochs_to_evaluate(config)
        run = read_run(load_path) or {}
        check_model_config(run, config, dm.full_config_spec(config), ctx.log)  # before the load names a shape
        model = dm.create_model(config)
        load_checkpoint(load_path, epochs[-1], model)
        ctx.log(f"exporting epoch {epochs[-1]} of {load_path}")
        with sole_artifact(args.out, f"export of {dm.model_name()}", replace=args.replace, checkpoint=load_path,
                           epoch=epochs[-1], model_config_digest=run.get("digest")) as artifact:
            artifact.fingerprints["model"] = fingerprint([run.get("digest"), load_path, epochs[-1]])
            rows = create_dataset(load_reader(config, "train"), config, "train")
            artifact.about["serving"] = export(dm, model, config, rows, artifact.path, ctx.log, args.sample_rows,
                                               args.onnx)
            if args.vectors:
                dm.export_vectors(model, config, artifact, args.vectors, ctx.log)
        ctx.log(f"exported to {args.out}")
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

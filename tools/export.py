"""Export a trained model: python tools/export.py -m config.yaml --out DIR [--epoch N] [--jit] [--vectors DIR]

Loads the checkpoint tools/infer.py would evaluate (the best epoch of a run with validation, else
the last; ``--epoch`` picks another) and hands it to the model's ``export`` (its DygraphModel),
which writes into ``--out`` - as a whole: into a staging folder renamed into place with a
manifest.json (the files, the checkpoint and epoch, the model config's digest); a non-empty
``--out`` is refused unless ``--replace``, so two exports never mix. Today the pretrained-vector
two-tower model exports (its towers' outputs of the pretrained vectors in ``--vectors``, and with
``--jit`` the towers as inference models); another model says that it has no export.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py

from tools.infer import epochs_to_evaluate  # noqa: E402
from models.common.artifacts import fingerprint, sole_artifact  # noqa: E402
from tools.utils.checkpoint import check_model_config, load_checkpoint, read_run  # noqa: E402
from tools.utils.config import ConfigError  # noqa: E402
from tools.utils.runtime import USER_ERRORS, add_config_arguments, setup  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--epoch", type=int, help="checkpoint epoch (default: best, else last)")
    parser.add_argument("--jit", action="store_true", help="also save the towers with paddle.jit.save")
    parser.add_argument("--replace", action="store_true", help="replace what --out holds (else a non-empty --out "
                                                               "is refused)")
    parser.add_argument("--vectors", help="folder of inputs to export (the pretrained two-tower model: users.npy "
                                          "/ .txt and/or items.npy / .txt)")
    args = parser.parse_args(argv)
    try:
        ctx = setup(args, distributed=False)
        config, dm = ctx.config, ctx.dygraph_model
        if not hasattr(dm, "export"):
            raise ConfigError(f"{config.path}: {dm.model_name()} has no export yet")
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
            return dm.export(model, config, artifact, args.vectors, args.jit, ctx.log)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

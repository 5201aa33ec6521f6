"""Evaluate saved models: python tools/infer.py -m models/<area>/<model>/config.yaml [-o key=value ...] [--seeds N]

The model's paradigm picks the protocol (models/common/evaluation.py): ranking and multi-task
metrics over runner.test_data_dir, retrieval over the whole catalog, MetaHeac's per-task
fine-tune-then-test, MetaEmb's cold-start and warm-up. It evaluates runner.infer_start_epoch ..
runner.infer_end_epoch - 1 from runner.infer_load_path (default: runner.model_save_path, also when
only the latter is overridden with -o; the start defaults to the best epoch of a run with
validation, else the last), logs the results and writes them to <output>/metrics.json, where
<output> is runner.infer_output_path if set (then per-sample predictions go there too), else
<infer_load_path>/<protocol>. With --seeds N, N models (runner.seed, +1, ...) are trained into
<output>/seed<s>/base and each is evaluated; metrics.json gets the mean over seeds.

The folder and epochs evaluated are logged first; the output folder is checked to be writable
before any work; checkpoints are loaded strictly (a parameter that does not fit is an error).
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py

from models.common.artifacts import read_manifest, sole_artifact, write_json  # noqa: E402
from models.common.evaluation import numbers  # noqa: E402
from tools.utils.checkpoint import (CheckpointError, best_epoch, check_writable, complete_epochs,  # noqa: E402
                                    check_model_config, data_differences, load_checkpoint, read_run, side_files)
from tools.utils.config import ConfigError  # noqa: E402
from tools.utils.runtime import USER_ERRORS, Context, add_config_arguments, seed_everything, setup  # noqa: E402


def epochs_to_evaluate(config):
    load_path = config.get("runner.infer_load_path") or config.get("runner.model_save_path")
    start = config.get("runner.infer_start_epoch")
    if start is None:  # the best epoch of an early-stopped run, else the last one
        best = best_epoch(load_path)
        start = config.get("runner.epochs") - 1 if best is None else best
    end = config.get("runner.infer_end_epoch")
    if end is None:
        end = start + 1
    available = complete_epochs(load_path)
    missing = [e for e in range(start, end) if e not in available]
    if missing or start >= end:
        raise ConfigError(
            f"runner.infer_load_path: no complete checkpoint for epoch(s) {missing or [start]} in {load_path!r} "
            f"(available: {available or 'none'}; set runner.infer_start_epoch / infer_end_epoch)")
    return load_path, list(range(start, end))


def prepare_evaluation(config, spec, log, default_output):
    """What every evaluation does before work: pick the folder and epochs, check the output
    folder is writable, log both and any difference between the training run's model config and
    this one (a ConfigError for a key ``spec`` declares ``scoring``: the model would score with
    another function than it was trained with). -> (load_path, epochs, output_dir); output_dir
    defaults to <load_path>/<default_output>."""
    load_path, epochs = epochs_to_evaluate(config)
    output_dir = config.get("runner.infer_output_path") or os.path.join(load_path, default_output)
    check_writable(output_dir, "runner.infer_output_path")
    source = "runner.infer_load_path"
    if load_path != config.get("runner.model_save_path"):
        source += f"; runner.model_save_path is {config.get('runner.model_save_path')}"
    log(f"evaluating epoch(s) {epochs} of {load_path} ({source}); output to {output_dir}")
    check_model_config(read_run(load_path), config, spec, log)
    return load_path, epochs, output_dir


def seed_models(ctx, seeds, output_dir):
    """[(("seed", s), config, folder, epoch)] of ``seeds`` models trained with seeds runner.seed, +1, ...
    into <output_dir>/seed<s>/base (tools/trainer.py's train; ``output_dir``: the staging folder)."""
    from tools.trainer import train

    runs, first = [], ctx.config.get("runner.seed")
    for seed in range(first, first + seeds):
        folder = os.path.join(output_dir, f"seed{seed}", "base")
        config = ctx.config.copy({"runner.seed": seed, "runner.model_save_path": folder, "runner.infer_load_path": folder,
                                  "runner.overwrite": True, "runner.resume": False})
        seed_everything(seed)
        train(Context(config, ctx.dygraph_model))
        runs.append((("seed", seed), config, folder, config.get("runner.epochs") - 1))
    return runs


def check_data(evaluation, config, load_path):
    """The data the evaluation read and the side files the config names are the ones the model
    was trained on (run.json); else a CheckpointError naming the key."""
    run = read_run(load_path)
    if run:
        problems = data_differences(run, evaluation.opened, side_files(evaluation.dm.full_config_spec(config), config))
        if problems:
            raise CheckpointError(f"{load_path} was trained on other data: {'; '.join(problems)}")


def replaceable(output_dir, evaluation, config):
    """Whether the evaluation may replace what ``output_dir`` holds: its own earlier output (the
    manifest says so), or anything with runner.overwrite."""
    manifest = read_manifest(output_dir) if os.path.isdir(output_dir) else None
    return bool(manifest and str(manifest.get("kind", "")).startswith(f"{evaluation.name} of ")) \
        or config.get("runner.overwrite")


def infer(ctx, seeds=1):
    """Evaluate the configured epochs (or ``seeds`` freshly trained models); -> {label: results}.
    Everything goes to the output folder as a whole (a staging folder renamed into place with a
    manifest): no output mixes two evaluations."""
    config, dm = ctx.config, ctx.dygraph_model
    evaluation = dm.create_evaluation(config, ctx.log)
    if seeds == 1:
        load_path, epochs, output_dir = prepare_evaluation(config, dm.full_config_spec(config), ctx.log, evaluation.name)
        check_data(evaluation, config, load_path)
    else:
        load_path = None
        output_dir = config.get("runner.infer_output_path") or os.path.join(
            config.get("runner.model_save_path"), f"{evaluation.name}_seeds{seeds}")
        check_writable(output_dir, "runner.infer_output_path")
        ctx.log(f"{seeds} seeds from {config.get('runner.seed')}: each trains its model into {output_dir}/seed<s>/base")
    with sole_artifact(output_dir, f"{evaluation.name} of {dm.model_name()}", option="runner.infer_output_path",
                       replace=replaceable(output_dir, evaluation, config), replace_hint="-o runner.overwrite=true",
                       checkpoints=load_path) as out:
        runs = [(("epoch", e), config, load_path, e) for e in epochs] if seeds == 1 else seed_models(ctx, seeds, out.path)
        results, entries = {}, []
        for (kind, number), run_config, folder, epoch in runs:
            label = f"{kind}{number}"  # epoch3, seed2019: names the run's output files
            seed_everything(run_config.get("runner.seed"))
            model = dm.create_model(run_config)
            load_checkpoint(folder, epoch, model)
            results[label] = evaluation.evaluate(model, run_config, label, out.path)
            entries.append({kind: number, **results[label]})
            values = numbers(results[label])
            ctx.log(f"infer {kind}: {number}, " + ", ".join(f"{k}: {v:.6f}" for k, v in values.items()))
            undefined = [k for k, v in values.items() if isinstance(v, float) and math.isnan(v)]
            if undefined:
                ctx.log(f"note: {', '.join(undefined)} undefined on this data (nan; null in metrics.json): an AUC "
                        f"needs both labels among the rows it is computed on")
        headline = evaluation.finish(results, out.path)
        write_json(os.path.join(out.path, "metrics.json"), {"config": config.path, "load_path": load_path,
                                                            evaluation.name: entries, "headline": headline})
    ctx.log(f"wrote {output_dir} (metrics.json and the evaluation's files)")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--seeds", type=int, default=1, help="train and evaluate this many models, with seeds "
                        "runner.seed, +1, ... (default 1: evaluate the saved epochs)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    try:
        return infer(setup(args, distributed=False), args.seeds)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

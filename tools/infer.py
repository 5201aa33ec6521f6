"""Evaluate saved epochs: python tools/infer.py -m models/<area>/<model>/config.yaml [-o key=value ...]

Evaluates runner.infer_start_epoch .. runner.infer_end_epoch - 1 from runner.infer_load_path
(default: runner.model_save_path, also when only the latter is overridden with -o), logs the
metrics and writes them to <output>/metrics.json, where <output> is runner.infer_output_path if
set (then per-sample predictions go there too, one CSV per epoch), else <infer_load_path>/infer.
The folder and epochs evaluated are logged first; the output folder is checked to be writable
before any work; checkpoints are loaded strictly (a parameter that does not fit is an error).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402
import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
import paddle  # noqa: E402

from tools.utils.checkpoint import (best_epoch, check_writable, complete_epochs, config_differences, load_checkpoint,  # noqa: E402
                                    read_run, write_atomic, write_json)
from tools.utils.config import ConfigError  # noqa: E402
from tools.utils.data import create_dataset  # noqa: E402
from models.common.loading import load_reader  # noqa: E402
from tools.utils.runtime import evaluate, run_main, setup  # noqa: E402


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


def prepare_evaluation(config, log, default_output):
    """What every evaluation does before work: pick the folder and epochs, check the output
    folder is writable, log both (and any difference between the training run's model config and
    this one). -> (load_path, epochs, output_dir); output_dir defaults to
    <load_path>/<default_output>."""
    load_path, epochs = epochs_to_evaluate(config)
    output_dir = config.get("runner.infer_output_path") or os.path.join(load_path, default_output)
    check_writable(output_dir, "runner.infer_output_path")
    source = "runner.infer_load_path"
    if load_path != config.get("runner.model_save_path"):
        source += f"; runner.model_save_path is {config.get('runner.model_save_path')}"
    log(f"evaluating epoch(s) {epochs} of {load_path} ({source}); output to {output_dir}")
    run = read_run(load_path)
    for difference in (config_differences(run, config) if run else []):
        log(f"note: {difference}")
    return load_path, epochs, output_dir


def check_evaluator(dm, config):
    """A model evaluated by its own script (``evaluator_script``) is refused by tools/infer.py."""
    script = getattr(dm, "evaluator_script", None)
    if script:
        path = os.path.join(os.path.dirname(config.path), script)
        raise ConfigError(f"{config.path}: this model is evaluated by its own script, not tools/infer.py: "
                          f"python {path} -m {config.path}")


def infer(ctx):
    """Evaluate the configured epochs; return {epoch: metrics}."""
    config, dm = ctx.config, ctx.dygraph_model
    check_evaluator(dm, config)
    load_path, epochs, output_dir = prepare_evaluation(config, ctx.log, "infer")
    output_path = config.get("runner.infer_output_path")
    model = dm.create_model(config)
    dataset = create_dataset(load_reader(config, "infer"), config, "infer")
    results = {}
    # A model with its own evaluation protocol (e.g. retrieval: export embeddings, search the
    # catalog) does it per epoch in ``evaluate_epoch`` -> {metric: value}.
    evaluate_epoch = getattr(dm, "evaluate_epoch", None)
    for epoch in epochs:
        load_checkpoint(load_path, epoch, model)
        if evaluate_epoch is not None:
            model.eval()
            with paddle.no_grad():
                values = evaluate_epoch(model, dataset, config, epoch, output_dir, ctx.log)
            ctx.log(f"infer epoch: {epoch}, " + ", ".join(f"{k}: {v:.6f}" for k, v in values.items()))
            results[epoch] = values
            continue
        values, columns = evaluate(dm, model, dataset, config, collect=bool(output_path))
        ctx.log(f"infer epoch: {epoch}, " + ", ".join(f"{k}: {v:.6f}" for k, v in values.items()))
        results[epoch] = values
        if output_path:
            frame = pd.DataFrame(columns)
            frame.index.name = "index"
            target = os.path.join(output_dir, f"predictions_epoch{epoch}.csv")
            write_atomic(target, lambda f: frame.to_csv(f, float_format="%.6g"))
            ctx.log(f"wrote {len(frame)} predictions to {target}")
    write_json(os.path.join(output_dir, "metrics.json"),
               {"config": config.path, "load_path": load_path,
                "infer": [{"epoch": e, **v} for e, v in results.items()],
                "headline": _headline(dm, results[epochs[-1]])})
    return results


def _headline(dm, values):
    """The last epoch's metrics, or the few a model names in ``headline_keys`` (demo table)."""
    keys = getattr(dm, "headline_keys", None)
    return {k: values[k] for k in keys if k in values} if keys else values


def main(args):
    """Evaluate saved checkpoints of a model."""
    return infer(setup(args, distributed=False))


if __name__ == "__main__":
    run_main(main)

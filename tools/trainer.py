"""Train a model: python tools/trainer.py -m models/<area>/<model>/config.yaml [-o key=value ...]"""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
import paddle  # noqa: E402

from models.common.data import RowRange, list_data_files  # noqa: E402
from tools.utils.checkpoint import (BEST, CheckpointError, data_differences, load_checkpoint,  # noqa: E402
                                    prepare_save_path, read_run, save_checkpoint, side_files, write_json, write_run)
from tools.utils.config import ConfigError  # noqa: E402
from models.common.data.loader import create_dataset, create_loader  # noqa: E402
from models.common.loading import load_reader  # noqa: E402
from models.common.artifacts import FolderLock  # noqa: E402
from models.common.base_model import unwrap  # noqa: E402
from models.common.evaluation import evaluate  # noqa: E402
from models.common.metrics import merge_metrics  # noqa: E402
from tools.utils.parallel import create_model, distribute, wait_for_all_ranks  # noqa: E402
from tools.utils.runtime import run_main, setup, train_step  # noqa: E402

METRIC = "logloss"  # the validation metric early stopping and the best epoch go by (lower is better)
MONITOR = f"valid_{METRIC}"


def _format(values):
    return ", ".join(f"{k}: {v:.6f}" if isinstance(v, float) else f"{k}: {v}" for k, v in values.items())


def gather_epoch(ctx, loss_sum, seen, metrics):
    """(loss sum, rows) of all ranks; ``metrics`` become the merge of all ranks' (summed in rank
    order, so that every rank ends with the same values)."""
    gathered = []
    paddle.distributed.all_gather_object(gathered, (loss_sum, seen, metrics))
    for metric in metrics:
        metric.reset()
    merge_metrics(metrics, [m for _, _, m in gathered])
    return sum(g[0] for g in gathered), sum(g[1] for g in gathered)


def train(ctx):
    """Run the configured epochs; return the per-epoch summaries (also in metrics.json). The main
    process holds the lock of runner.model_save_path meanwhile: a second run into it stops at once."""
    if not ctx.is_main:
        return _train(ctx)
    with FolderLock(ctx.config.get("runner.model_save_path"), "runner.model_save_path") as lock:
        if lock.taken_over:
            ctx.log(f"took over the lock of {lock.folder} from a run that ended without releasing it: {lock.taken_over}")
        return _train(ctx)


def _train(ctx):
    config, dm = ctx.config, ctx.dygraph_model
    save_path = config.get("runner.model_save_path")
    # Leftovers removed, earlier run's epochs refused (or deleted with runner.overwrite), resume
    # only onto checkpoints of the same model config.
    done = prepare_save_path(config, ctx.log, ctx.is_main)
    if ctx.world_size > 1:
        wait_for_all_ranks()  # the main process has prepared the folder
    model = create_model(ctx)
    optimizer = dm.create_optimizer(model, config)
    model, exchange = distribute(ctx, model)
    row_sharded = exchange is not None and bool(exchange.tables)
    history, start_epoch = [], 0
    if done:
        load_checkpoint(save_path, done[-1], model, optimizer, config_key="runner.model_save_path")
        start_epoch = done[-1] + 1
        history = [h for h in _read_history(save_path) if h["epoch"] < start_epoch]
        ctx.log(f"resumed from {os.path.join(save_path, str(done[-1]))}, continuing at epoch {start_epoch}")

    dataset = create_dataset(load_reader(config, "train"), config, "train")
    if getattr(dataset, "skipped_lines", 0):
        ctx.log(f"skipped {dataset.skipped_lines} malformed lines (runner.skip_bad_lines is true)")
    trained_on = getattr(dataset, "identity", None), side_files(dm.full_config_spec(config), config)
    if done:  # the same data and side files as the checkpoints were trained on
        problems = data_differences(read_run(save_path), [("runner.train_data_dir", dataset)], trained_on[1])
        if problems:
            raise CheckpointError(f"runner.resume: {'; '.join(problems)}")
    dataset = dm.training_data(dataset, config)
    dataset, valid = split_validation(config, dm, dataset, ctx.log)
    patience = config.get("runner.early_stop_patience")
    metrics, names = dm.create_metrics("train")
    epochs, interval = config.get("runner.epochs"), config.get("runner.print_interval")
    for epoch in range(start_epoch, epochs):
        if valid is not None and patience and epochs_without_gain(history) >= patience:
            break  # a resumed run that had already stopped early
        paddle.seed(config.get("runner.seed") + epoch)  # dropout etc.: same per epoch, so resume is exact
        model.train()
        for metric in metrics:
            metric.reset()
        loader = create_loader(dataset, config, "train", epoch, ctx.rank, ctx.world_size)
        loss_sum, seen, epoch_start = 0.0, 0, time.perf_counter()
        reader_cost = batch_cost = 0.0
        interval_seen = 0
        tick = time.perf_counter()
        for batch_id, batch in enumerate(loader):
            fetched = time.perf_counter()
            loss, print_dict = train_step(dm, model, optimizer, metrics, batch, config, exchange=exchange)
            rows = dm.batch_rows(batch)
            loss_sum += float(loss) * rows
            seen += rows
            interval_seen += rows
            done_at = time.perf_counter()
            reader_cost += fetched - tick
            batch_cost += done_at - tick
            tick = done_at
            if (batch_id + 1) % interval == 0:
                values = {"loss": loss_sum / seen}
                values.update({n: m.accumulate() for n, m in zip(names, metrics)})
                values.update(print_dict or {})
                ctx.log(f"epoch: {epoch}, batch: {batch_id + 1}, {_format(values)}, "
                        f"avg_reader_cost: {reader_cost / interval:.5f} sec, "
                        f"avg_batch_cost: {batch_cost / interval:.5f} sec, "
                        f"avg_samples: {interval_seen / interval:.1f}, ins/s: {interval_seen / batch_cost:.1f}")
                reader_cost = batch_cost = 0.0
                interval_seen = 0
        seconds = time.perf_counter() - epoch_start
        if ctx.world_size > 1:  # the epoch's loss, rows and metrics over every rank's shard, not rank 0's
            loss_sum, seen = gather_epoch(ctx, loss_sum, seen, metrics)
        summary = {"epoch": epoch, "loss": loss_sum / max(seen, 1), "samples": seen,
                   "seconds": round(seconds, 3), "ins_per_sec": seen / seconds if seconds else 0.0}
        summary.update({n: m.accumulate() for n, m in zip(names, metrics)})
        if valid is not None:
            values, _ = evaluate(dm, model, valid, config)
            summary.update({f"valid_{k}": v for k, v in values.items()})
        ctx.log(f"epoch {epoch} done: {_format({k: v for k, v in summary.items() if k != 'epoch'})}")
        if exchange is not None and exchange.steps:
            ctx.log(f"gradient exchange: {exchange.bytes_sent / exchange.steps / 2 ** 20:.3f} MB sent per step and rank")
        history.append(summary)
        if ctx.is_main and epoch == start_epoch and not done:
            write_run(save_path, config, *trained_on)  # the manifest first: no checkpoint without one
        if ctx.is_main or row_sharded:  # row shards: every rank saves its rows
            path = save_checkpoint(save_path, epoch, model, optimizer)
            if valid is not None and best_of(history)["epoch"] == epoch:
                save_checkpoint(save_path, BEST, model, optimizer)
                ctx.log(f"epoch {epoch} has the lowest {MONITOR} so far: copied to {os.path.join(save_path, BEST)}")
        if ctx.is_main:
            write_json(os.path.join(save_path, "metrics.json"), run_metrics(config, history, valid, patience))
            ctx.log(f"saved checkpoint {path}")
        if ctx.world_size > 1:
            wait_for_all_ranks()  # rank 0 has saved
        if valid is not None and patience and epochs_without_gain(history) >= patience:
            ctx.log(f"early stopping: {MONITOR} has not improved for {patience} epoch(s)")
            break
    if valid is not None and history:
        best = best_of(history)
        load_checkpoint(save_path, BEST, model, config_key="runner.model_save_path")
        ctx.log(f"restored the best epoch {best['epoch']} ({MONITOR} {best[MONITOR]:.6f}) from "
                f"{os.path.join(save_path, BEST)}")
    whose = " (this rank's rows of the sharded tables)" if row_sharded else ""
    ctx.log(f"final parameter digest{whose}: {parameter_digest(model)} "
            f"({', '.join(f'{k}={v}' for k, v in math_environment().items())})")
    return history


def split_validation(config, dm, dataset, log):
    """-> (training rows, validation rows or None), from runner.valid_data_dir (files read by the
    infer reader) or runner.valid_fraction (the last rows of the training data). The keys
    themselves were checked with the config (tools.utils.config.check_runner)."""
    valid_dir, fraction = config.get("runner.valid_data_dir"), config.get("runner.valid_fraction")
    if not valid_dir and fraction is None:
        return dataset, None
    if METRIC not in dm.create_metrics("infer")[1]:
        raise ConfigError(f"runner.valid_data_dir / valid_fraction: this model's evaluation reports no "
                          f"{METRIC} to select the best epoch by")
    if valid_dir:
        return dataset, load_reader(config, "infer")(list_data_files(valid_dir, "runner.valid_data_dir"), config)
    if not hasattr(dataset, "take"):
        raise ConfigError("runner.valid_fraction: this model's reader cannot hold out rows; use runner.valid_data_dir")
    rows = len(dataset)
    held = int(round(rows * fraction))
    if not 0 < held < rows:
        raise ConfigError(f"runner.valid_fraction: {fraction} of {rows} rows leaves no validation or no training rows")
    log(f"validation: the last {held} of {rows} training rows (runner.valid_fraction={fraction})")
    return RowRange(dataset, 0, rows - held), RowRange(dataset, rows - held, rows)


def best_of(history):
    """The epoch summary with the lowest validation loss (the earlier one on a tie)."""
    return min(history, key=lambda h: (h[MONITOR], h["epoch"]))


def epochs_without_gain(history):
    return history[-1]["epoch"] - best_of(history)["epoch"] if history else 0


def run_metrics(config, history, valid, patience):
    data = {"config": config.path, "train": history, "math_environment": math_environment()}
    if valid is not None:
        data["early_stopping"] = {"monitor": MONITOR, "patience": patience, "best_epoch": best_of(history)["epoch"],
                                  "checkpoint": BEST}
    return data


def math_environment():
    """The settings that change paddle's CPU sums in the last bits (a digest holds for one of them)."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "MKL_CBWR")
    values = {name: os.environ.get(name, "unset") for name in names}
    values["paddle_num_threads"] = paddle.get_flags(["FLAGS_paddle_num_threads"])["FLAGS_paddle_num_threads"]
    return values


def parameter_digest(model):
    """Short hash of all parameter values: equal across data-parallel ranks that stayed in sync."""
    layer = unwrap(model)
    digest = hashlib.sha256()
    for name, value in sorted(layer.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:16]


def _read_history(save_path):
    import json

    try:
        with open(os.path.join(save_path, "metrics.json"), encoding="utf-8") as f:
            return json.load(f).get("train", [])
    except (OSError, ValueError):
        return []


def main(args):
    """Train a model from its config file."""
    return train(setup(args))


if __name__ == "__main__":
    run_main(main)

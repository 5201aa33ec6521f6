"""Checkpoints ``<model_save_path>/<epoch>/rec.pdparams`` + ``rec.pdopt`` and JSON outputs, all
written atomically: into a temporary name first, renamed into place only when complete.

A training run also writes ``<model_save_path>/run.json`` (the run manifest): the model-defining
part of its config (every section but ``runner:``), so that a later run knows whether the
checkpoints in the folder are its own (``prepare_save_path``). Loading is strict: a checkpoint
whose parameters differ from the model's in name or shape is an error naming the parameter.
"""
import json
import os
import shutil
import tempfile
import time

import numpy as np
import paddle

from models.common.artifacts import file_fingerprint, fingerprint, write_json
from models.common.base_model import unwrap
from models.common.sharding import shard_of
from tools.utils.config import ConfigError, _flatten

CHECKPOINT_FILES = ("rec.pdparams", "rec.pdopt")
RUN_FILE = "run.json"
SHARDING_FILE = "sharding.json"  # in an epoch folder whose tables were saved row-sharded
# Top-level config sections that do not define the trained model (the manifest leaves them out).
NOT_MODEL_SECTIONS = ("runner", "benchmark")
# What a run writes into model_save_path besides the epoch folders (removed by runner.overwrite).
RUN_OUTPUTS = (RUN_FILE, "metrics.json")
BEST = "best"  # copy of the best epoch's checkpoint when the run has validation data
# Temporary names of atomic writes (save_checkpoint, write_atomic, check_writable): an interrupted
# run (kill -9, power loss) can leave them; the next run removes them.
TEMPORARY_PREFIXES = (".tmp-", ".write-test-") + tuple(f".{name}." for name in RUN_OUTPUTS)


class CheckpointError(ConfigError):
    """A checkpoint that does not belong to the model or run the config describes (a user error)."""


def check_writable(folder, config_key):
    """Fail early, naming the config key, if ``folder`` cannot be created or written."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise PermissionError(f"{config_key}: cannot write to {folder!r} ({error.strerror})") from None


def _state_dict(model):
    return unwrap(model).state_dict()


def row_shards(state):
    """{name: parameter} of a state dict's row shards (models.common.sharding), or {}."""
    return {name: value for name, value in state.items() if getattr(value, "row_shard", None)}


def save_checkpoint(folder, epoch, model, optimizer):
    """Write ``folder/<epoch>/`` atomically: a crash leaves the old state or the whole new one.
    A model with row-sharded tables is saved by every rank together (``_save_sharded``)."""
    state = _state_dict(model)
    shards = row_shards(state)
    if shards:
        return _save_sharded(folder, epoch, state, optimizer, shards)
    final = os.path.join(folder, str(epoch))
    staging = tempfile.mkdtemp(dir=folder, prefix=f".tmp-{epoch}-")
    try:
        paddle.save(state, os.path.join(staging, "rec.pdparams"))
        paddle.save(optimizer.state_dict(), os.path.join(staging, "rec.pdopt"))
        _replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _replace(staging, final):
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(staging, final)


def _shard_keys(optimizer_state, shards):
    """The optimizer state entries of the row shards (named after the parameter: moments, beta powers)."""
    prefixes = tuple(p.name + "_" for p in shards.values())
    return {key for key in optimizer_state if key.startswith(prefixes)}


def _save_sharded(folder, epoch, state, optimizer, shards):
    """Every rank writes its rows and their optimizer state (``rows-<rank>.pdparams/.pdopt``); rank 0
    also what all ranks hold alike (``rec.pdparams/.pdopt``) and ``sharding.json``. All go into one
    staging folder that rank 0 renames into place once every rank has written."""
    from tools.utils.parallel import wait_for_all_ranks

    rank, world_size, _ = next(iter(shards.values())).row_shard
    final, staging = os.path.join(folder, str(epoch)), os.path.join(folder, f".tmp-{epoch}-sharded")
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
    wait_for_all_ranks()
    optimizer_state = optimizer.state_dict()
    keys = _shard_keys(optimizer_state, shards)
    paddle.save(dict(shards), os.path.join(staging, f"rows-{rank}.pdparams"))
    paddle.save({k: optimizer_state[k] for k in keys}, os.path.join(staging, f"rows-{rank}.pdopt"))
    if rank == 0:
        paddle.save({n: v for n, v in state.items() if n not in shards}, os.path.join(staging, "rec.pdparams"))
        paddle.save({k: v for k, v in optimizer_state.items() if k not in keys}, os.path.join(staging, "rec.pdopt"))
        write_json(os.path.join(staging, SHARDING_FILE), {
            "world_size": world_size, "rule": "row i of a table is row i // world_size of rows-<i % world_size>",
            "tables": {n: [p.row_shard[2], p.shape[1]] for n, p in shards.items()}})
    wait_for_all_ranks()
    if rank == 0:
        _replace(staging, final)
    wait_for_all_ranks()
    return final


def complete_epochs(folder):
    """Epoch numbers that have a complete checkpoint in ``folder``, ascending."""
    if not os.path.isdir(folder):
        return []
    epochs = []
    for name in os.listdir(folder):
        if name.isdigit() and all(os.path.isfile(os.path.join(folder, name, f)) for f in CHECKPOINT_FILES):
            epochs.append(int(name))
    return sorted(epochs)


def checkpoint_epochs(folder):
    """Every epoch folder name in ``folder`` (complete or not), ascending."""
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit() and os.path.isdir(os.path.join(folder, n)))


def _read(path, config_key):
    try:
        return paddle.load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{config_key}: {path} does not exist") from None
    except Exception as error:  # truncated or foreign file: paddle raises various types
        raise CheckpointError(f"{config_key}: cannot read checkpoint file {path} ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None


def _shape(value):
    return list(getattr(value, "shape", []))


def state_mismatches(expected, loaded):
    """Differences between a model's state_dict and a loaded one, as readable strings."""
    problems = []
    for name, value in expected.items():
        if name not in loaded:
            problems.append(f"parameter '{name}' {_shape(value)} is missing from the checkpoint")
        elif _shape(loaded[name]) != _shape(value):
            problems.append(f"parameter '{name}' has shape {_shape(loaded[name])} in the checkpoint "
                            f"but {_shape(value)} in the model")
    problems += [f"the checkpoint has parameter '{name}' {_shape(loaded[name])} that the model does not have"
                 for name in loaded if name not in expected]
    return problems


def load_checkpoint(folder, epoch, model, optimizer=None, config_key="runner.infer_load_path"):
    """Load ``folder/<epoch>`` into ``model`` (and ``optimizer``), strictly: a missing, extra or
    mis-shaped parameter is a CheckpointError naming the parameter and ``config_key``."""
    path = os.path.join(folder, str(epoch))
    params_file = os.path.join(path, "rec.pdparams")
    if not os.path.isfile(params_file):
        raise FileNotFoundError(f"{config_key}: no checkpoint for epoch {epoch}: {params_file} does not exist")
    layer = unwrap(model)
    state = _read(params_file, config_key)
    sharded = _read_sharding(path, layer, state, optimizer is not None, config_key)
    problems = state_mismatches(layer.state_dict(), state)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{config_key}: checkpoint {params_file} does not fit the model this config builds: "
            f"{'; '.join(problems[:3])}{more} - was it trained with other hyper_parameters?")
    layer.set_state_dict(state)
    if optimizer is not None:
        opt_file = os.path.join(path, "rec.pdopt")
        try:
            optimizer_state = _read(opt_file, config_key)
            if sharded:
                optimizer_state.update(_read(os.path.join(path, f"rows-{sharded[0]}.pdopt"), config_key))
            optimizer.set_state_dict(optimizer_state)
        except (AssertionError, KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{config_key}: optimizer state {opt_file} does not fit this config's "
                                  f"optimizer ({type(error).__name__}: {error})") from None


def _read_sharding(path, layer, state, with_optimizer, config_key):
    """Complete ``state`` (rec.pdparams of ``path``) with the rows of row-sharded tables: this
    rank's shard for a model sharded alike, the whole tables (re-assembled from every rank's
    rows) for an unsharded model, e.g. tools/infer.py's; -> (rank, world size) of the shard
    loaded, or None. Anything else - another world size, optimizer state into whole tables,
    whole tables into a sharded model - is refused in one line."""
    sharding_file = os.path.join(path, SHARDING_FILE)
    shards = row_shards(layer.state_dict())
    here = next(iter(shards.values())).row_shard[:2] if shards else None
    if not os.path.isfile(sharding_file):
        if here:
            raise CheckpointError(f"{config_key}: {path} holds whole tables; this run row-shards them "
                                  f"(runner.embedding_sharding=row): resume it with runner.embedding_sharding=none")
        return None
    with open(sharding_file, encoding="utf-8") as f:
        saved = json.load(f)
    world_size = saved["world_size"]
    if here:
        if here[1] != world_size:
            raise CheckpointError(f"{config_key}: {path} holds tables row-sharded over {world_size} ranks, this run "
                                  f"has {here[1]}: resume with {world_size} processes (tools/infer.py and tools/export.py "
                                  f"read it whole)")
        state.update(_read(os.path.join(path, f"rows-{here[0]}.pdparams"), config_key))
        return here
    if with_optimizer:
        raise CheckpointError(f"{config_key}: {path} holds tables row-sharded over {world_size} ranks: resume it "
                              f"with {world_size} processes and runner.embedding_sharding=row")
    for name, (rows, dim) in saved["tables"].items():  # whole tables: row i from rows-<i % N>[i // N]
        state[name] = np.empty((rows, dim), dtype=np.float32)
    for rank in range(world_size):
        for name, value in _read(os.path.join(path, f"rows-{rank}.pdparams"), config_key).items():
            shard_of(state[name], rank, world_size)[:] = np.asarray(value)
    return None


def best_epoch(folder):
    """The epoch a run with validation kept as its best (metrics.json), or None."""
    try:
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
            return (json.load(f).get("early_stopping") or {}).get("best_epoch")
    except (OSError, ValueError):
        return None


# ---- run manifest -------------------------------------------------------------------------------
def model_config(config):
    """{dotted key: value} of every section that defines the model (not ``runner:``), as JSON
    would store it."""
    sections = {k: v for k, v in config.data.items() if k not in NOT_MODEL_SECTIONS}
    return json.loads(json.dumps(_flatten(sections), sort_keys=True, default=str))


def read_run(folder):
    """The manifest of the run that wrote ``folder``, or None."""
    try:
        with open(os.path.join(folder, RUN_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def config_differences(run, config):
    """{'hyper_parameters.x': 'a in the saved run, b now', ...} between a run.json and a config."""
    saved, current = run.get("model_config", {}), model_config(config)
    return {key: f"{saved.get(key, '(absent)')!r} in the saved run, {current.get(key, '(absent)')!r} now"
            for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)}


def check_model_config(run, config, spec, log):
    """Before a trained model is used (evaluated, exported): log each difference between the
    training run's model config (``run``: its run.json, or None) and ``config`` as a note; a key
    ``spec`` declares ``scoring`` is a ConfigError, as the model would score with another function
    than it was trained with."""
    for key, difference in (config_differences(run, config) if run else {}).items():
        if key in spec and spec[key].scoring:
            raise ConfigError(f"{key}: {difference}; the model's scores depend on it, so use the value it was "
                              f"trained with (-o {key}=...)")
        log(f"note: {key}: {difference}")


def write_run(folder, config, data=None, side_files=None):
    """Write ``folder/run.json``: this run's model config (before its first checkpoint, so that
    no checkpoint exists without a manifest), what it trains on (``data``: the training rows'
    identity, see models.common.data.CachedDataset) and the fingerprints of the side files its
    config names (``side_files``: {key: fingerprint})."""
    values = model_config(config)
    write_json(os.path.join(folder, RUN_FILE), {
        "config": config.path, "model_config": values, "digest": fingerprint(values),
        "data": {"train": data} if data else {}, "side_files": side_files or {},
        "created": time.strftime("%Y-%m-%d %H:%M:%S")})


def side_files(spec, config):
    """{key: fingerprint} of the files the config names under keys declared ``file=True``."""
    out = {}
    for key, param in sorted(spec.items()):
        path = config.get(key)
        if param.file and path:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{key}: {path} does not exist")
            out[key] = file_fingerprint(path)
    return out


def data_differences(run, opened, files):
    """What in the data read now (``opened``: [(config key, dataset)]) and the side files named now
    (``files``: {key: fingerprint}) differs from what ``run`` (a run.json) was trained on; a
    dataset or a run that records nothing is not compared."""
    problems, trained = [], (run.get("data") or {}).get("train") or {}
    for key, dataset in opened:
        identity = getattr(dataset, "identity", None) or {}
        for field, what in (("id_space", "its id space (manifest.json: another preprocessing run)"),
                            ("column_names", "the names of its columns")):
            if trained.get(field) and identity.get(field) and trained[field] != identity[field]:
                problems.append(f"{key}: {what}, not the training data's: {first_difference(trained[field], identity[field])}")
    for key, recorded in sorted((run.get("side_files") or {}).items()):
        if key in files and files[key] != recorded:
            problems.append(f"{key}: not the file the model was trained with (fingerprint {files[key]}, trained with "
                            f"{recorded})")
    return problems


def first_difference(trained, now):
    """Where two recorded values part: the first differing column name, or both values."""
    if isinstance(trained, dict) and isinstance(now, dict):
        for name in sorted(set(trained) | set(now)):
            a, b = trained.get(name) or [], now.get(name) or []
            for position, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    return f"{name} component {position} is {y!r}, in training {x!r}"
            if len(a) != len(b):
                return f"{name} has {len(b)} components, in training {len(a)}"
    return f"{now!r}, in training {trained!r}"


def remove_leftovers(folder):
    """Delete the temporary files and folders an interrupted save left in ``folder``; -> names."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(TEMPORARY_PREFIXES):
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
            removed.append(name)
    return removed


def prepare_save_path(config, log, is_main=True):
    """Make ``runner.model_save_path`` ready for a training run; -> the complete epochs to resume
    from ([] for a fresh start).

    - leftovers of an interrupted save are removed (main process only);
    - runner.resume=true continues from the last complete epoch only when the folder's run.json
      says the checkpoints were written under the same model config; otherwise it refuses,
      naming what differs;
    - a fresh run (runner.resume=false) refuses a folder that already holds epoch folders, unless
      runner.overwrite=true, which deletes them (and run.json, metrics.json) first.
    Every process makes the same decision; only the main one changes the folder. The trainer
    writes the new run.json (``write_run``) just before its first checkpoint.
    """
    folder = config.get("runner.model_save_path")
    if is_main:
        check_writable(folder, "runner.model_save_path")
        removed = remove_leftovers(folder)
        if removed:
            log(f"removed {len(removed)} leftover(s) of an interrupted run from {folder}: {', '.join(removed)}")
    epochs = checkpoint_epochs(folder)
    if config.get("runner.resume"):
        done = complete_epochs(folder)
        if done:
            run = read_run(folder)
            if run is None:
                raise CheckpointError(
                    f"runner.resume: {folder} has checkpoints (epochs {done}) but no {RUN_FILE} saying which "
                    f"config wrote them; set runner.overwrite=true and runner.resume=false to start over")
            differences = [f"{key}: {what}" for key, what in config_differences(run, config).items()]
            if differences:
                more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
                raise CheckpointError(
                    f"runner.resume: the checkpoints in {folder} were written under a different model config: "
                    f"{'; '.join(differences[:3])}{more}")
            return done
    elif epochs:
        if not config.get("runner.overwrite"):
            raise ConfigError(
                f"runner.model_save_path: {folder} already holds checkpoints (epochs {epochs}) of an earlier run; "
                f"use another folder, runner.resume=true to continue that run, or runner.overwrite=true to delete them")
        if is_main:
            for epoch in epochs:
                shutil.rmtree(os.path.join(folder, str(epoch)))
            log(f"runner.overwrite is true: deleted the earlier run's epochs {epochs} from {folder}")
    if is_main:
        if os.path.isdir(os.path.join(folder, BEST)):
            shutil.rmtree(os.path.join(folder, BEST))  # an earlier run's best epoch
        for name in RUN_OUTPUTS:  # an earlier run's manifest and metrics are not this run's
            if os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    return []

"""Checkpoints ``<model_save_path>/<epoch>/rec.pdparams`` + ``rec.pdopt`` and JSON outputs, all
written atomically: into a temporary name first, renamed into place only when complete."""
import json
import math
import os
import shutil
import tempfile

import paddle

CHECKPOINT_FILES = ("rec.pdparams", "rec.pdopt")


def check_writable(folder, config_key):
    """Fail early, naming the config key, if ``folder`` cannot be created or written."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise PermissionError(f"{config_key}: cannot write to {folder!r} ({error.strerror})") from None


def _state_dict(model):
    layer = getattr(model, "_layers", model)  # unwrap paddle.DataParallel
    return layer.state_dict()


def save_checkpoint(folder, epoch, model, optimizer):
    """Write ``folder/<epoch>/`` atomically: a crash leaves the old state or the whole new one."""
    final = os.path.join(folder, str(epoch))
    staging = tempfile.mkdtemp(dir=folder, prefix=f".tmp-{epoch}-")
    try:
        paddle.save(_state_dict(model), os.path.join(staging, "rec.pdparams"))
        paddle.save(optimizer.state_dict(), os.path.join(staging, "rec.pdopt"))
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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


def load_checkpoint(folder, epoch, model, optimizer=None):
    path = os.path.join(folder, str(epoch))
    params_file = os.path.join(path, "rec.pdparams")
    if not os.path.isfile(params_file):
        raise FileNotFoundError(f"no checkpoint for epoch {epoch}: {params_file} does not exist")
    layer = getattr(model, "_layers", model)
    layer.set_state_dict(paddle.load(params_file))
    if optimizer is not None:
        optimizer.set_state_dict(paddle.load(os.path.join(path, "rec.pdopt")))


def write_atomic(path, write):
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _strict(value):
    """NaN (e.g. the AUC of a one-label set) -> None, so that the file is strict JSON."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_json(path, data):
    write_atomic(path, lambda f: json.dump(_strict(data), f, indent=2, sort_keys=True, default=float))

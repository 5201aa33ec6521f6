"""Files a run writes, written atomically: into a temporary name beside the target, renamed into
place only when complete, so that a crash leaves the old file or the whole new one."""
import json
import math
import os
import tempfile


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

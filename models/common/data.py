"""Data helpers for readers: an in-memory column dataset and a bulk parser for PaddleRec's
slot format (``name:value name:value ...``, one value per slot).

Readers parse whole files at once with pandas' C parser; only when that fast path finds
something wrong does a line-by-line pass run, to name the file and line of the problem.
"""
import io
import logging

import numpy as np
import pandas as pd
import paddle

log = logging.getLogger(__name__)


class DataFormatError(ValueError):
    """A data file does not have the expected format; the message names file and line."""


class ArrayDataset(paddle.io.Dataset):
    """Columns held as numpy arrays with equal first dimension.

    ``take(indices)`` returns a whole batch (a list of arrays, one per column) in one fancy-index
    operation; the runners use it so that no per-sample Python work happens while training.
    """

    def __init__(self, columns, names):
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        self.columns = columns
        self.names = list(names)
        self.skipped_lines = 0

    def __len__(self):
        return len(self.columns[0]) if self.columns else 0

    def __getitem__(self, index):
        return [c[index] for c in self.columns]

    def take(self, indices):
        return [c[indices] for c in self.columns]


def list_data_files(path, config_key):
    """Sorted regular files (not hidden) in directory ``path``; a clear error if there are none."""
    import os

    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"{config_key}: data directory {path!r} does not exist")
    files = sorted(
        os.path.join(path, f) for f in os.listdir(path)
        if not f.startswith(".") and os.path.isfile(os.path.join(path, f))
    )
    if not files:
        raise FileNotFoundError(f"{config_key}: data directory {path!r} contains no files")
    return files


def _check_line(tokens, slots):
    """Why a tokenised line does not match ``slots`` (list of (name, dtype)), or None."""
    if len(tokens) != len(slots):
        return f"expected {len(slots)} fields 'name:value', found {len(tokens)}"
    for position, (token, (name, dtype)) in enumerate(zip(tokens, slots), start=1):
        key, sep, value = token.partition(":")
        if not sep or key != name:
            return f"field {position} is {token!r}, expected '{name}:<value>'"
        try:
            dtype(value) if dtype is float else int(value)
        except ValueError:
            kind = "a number" if dtype is float else "an integer"
            return f"field {position} ({name}) has value {value!r}, expected {kind}"
    return None


def read_slot_file(path, slots, skip_bad_lines=False):
    """Parse a slot-format file into one array per slot.

    ``slots`` is a list of (name, python type) with type ``int`` (-> int64) or ``float``
    (-> float32), in the order they appear on every line. Returns (arrays, skipped_line_count).
    A malformed line raises DataFormatError naming file and line, or is skipped and counted when
    ``skip_bad_lines`` is true.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if not raw or raw.isspace():
        return [np.empty(0, np.int64 if t is int else np.float32) for _, t in slots], 0
    arrays = _parse_fast(raw, slots)
    if arrays is not None:
        return arrays, 0
    # Slow path: find the bad lines, report or drop them, and parse the rest in bulk.
    good, skipped = [], 0
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        problem = _check_line(line.split(), slots)
        if problem is None:
            good.append(line)
        elif skip_bad_lines:
            skipped += 1
        else:
            raise DataFormatError(f"{path}, line {number}: {problem}")
    if not good:
        return [np.empty(0, np.int64 if t is int else np.float32) for _, t in slots], skipped
    arrays = _parse_fast("\n".join(good).encode(), slots)
    if arrays is None:  # the line check and the bulk parser disagree: should not happen
        raise DataFormatError(f"{path}: could not parse the file although every line looks valid")
    return arrays, skipped


def _parse_fast(raw, slots):
    """Bulk parse with pandas' C parser; None if anything is off (field count or value).

    Only the value columns are materialised (string key columns would cost twice the parse
    time); slot names are checked on the first line, the field count and values on every line.
    """
    first_line = raw[:65536].lstrip().split(b"\n", 1)[0]  # only a prefix: no copy of the file
    if _check_line(first_line.decode("utf-8", errors="replace").split(), slots) is not None:
        return None
    width = 2 * len(slots)
    dtypes = {2 * i + 1: (np.int64 if kind is int else np.float32) for i, (_, kind) in enumerate(slots)}
    try:
        frame = pd.read_csv(
            io.BytesIO(raw.replace(b":", b" ")), sep=" ", header=None, names=range(width),
            usecols=list(dtypes), dtype=dtypes, index_col=False, skip_blank_lines=True, engine="c",
        )
    except (pd.errors.ParserError, ValueError, TypeError, OverflowError):  # too many fields, bad value
        return None
    # pandas fills a short line with NaN and silently truncates a long one: count separators.
    if frame.isna().to_numpy().any() or raw.count(b":") != len(frame) * len(slots):
        return None
    return [frame[column].to_numpy() for column in dtypes]

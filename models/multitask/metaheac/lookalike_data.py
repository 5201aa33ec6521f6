"""Tencent Look-alike files as MetaHeac preprocesses them: one row per (ad, user) with

    label, aid, 7 static user fields, 7 multi-hot user fields (padded id lists) + <field>_length,
    6 ad fields

Two formats with the same columns:
- ``.npz`` (numpy, loaded with allow_pickle=False: cannot execute code): scalar columns as 1-D
  int arrays, multi-hot columns as 2-D [rows, width] int arrays. Everything this repo writes.
- ``.pkl``: the published pandas DataFrame pickles (multi-hot cells are numpy arrays). Unpickling
  can execute arbitrary code: load pickles only from a trusted source (datasets/Lookalike/run.sh
  checks the archive's checksum).
"""
import os

import numpy as np
import pandas as pd

from models.common.data import DataFormatError

STATIC = ["carrier", "consumptionAbility", "LBS", "age", "education", "gender", "house"]
DYNAMIC = ["interest1", "interest2", "interest3", "kw1", "kw2", "topic1", "topic2"]
SEQ_LENS = [10, 10, 10, 5, 5, 5, 5]
AD = ["advertiserId", "campaignId", "creativeSize", "adCategoryId", "productId", "productType"]
LENGTHS = [f + "_length" for f in DYNAMIC]
COLUMNS = ["label", "aid"] + STATIC + DYNAMIC + LENGTHS + AD
EXTENSIONS = (".npz", ".pkl")


class Rows:
    """Model-ready arrays: aid [n], label float32 [n], ids int64 [n, 63] (static | multi-hot |
    ad, per-field ids), lengths int64 [n, 7]."""

    def __init__(self, aid, label, ids, lengths):
        self.aid, self.label, self.ids, self.lengths = aid, label, ids, lengths

    def __len__(self):
        return len(self.label)

    def take(self, index):
        return Rows(self.aid[index], self.label[index], self.ids[index], self.lengths[index])

    @staticmethod
    def concat(parts):
        return Rows(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("aid", "label", "ids", "lengths")))


def read_columns(path):
    """{column: array} of one file (.npz or .pkl); multi-hot columns as 2-D arrays."""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            missing = [c for c in COLUMNS if c not in data.files]
            if missing:
                raise DataFormatError(f"{path}: missing column(s) {missing}")
            return {c: data[c] for c in COLUMNS}
    if path.endswith(".pkl"):
        frame = pd.read_pickle(path)  # trusted files only, see the module docstring
        if not isinstance(frame, pd.DataFrame):
            raise DataFormatError(f"{path}: expected a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise DataFormatError(f"{path}: missing column(s) {missing}")
        columns = {}
        for c in COLUMNS:
            values = frame[c].to_numpy()
            if c in DYNAMIC:
                try:
                    values = np.stack(values) if len(values) else np.zeros((0, SEQ_LENS[DYNAMIC.index(c)]))
                except ValueError:
                    raise DataFormatError(f"{path}: column {c} holds id lists of different lengths") from None
            columns[c] = values
        return columns
    raise DataFormatError(f"{path}: unknown data file type (expected one of {EXTENSIONS})")


def to_rows(columns, path, max_idxs):
    """Check one file's columns against the schema and ``max_idxs`` and pack them as Rows."""
    n = len(columns["label"])
    for c in COLUMNS:
        if len(columns[c]) != n:
            raise DataFormatError(f"{path}: column {c} has {len(columns[c])} rows, label has {n}")
        if not np.issubdtype(np.asarray(columns[c]).dtype, np.integer):
            raise DataFormatError(f"{path}: column {c} must hold integers, found {np.asarray(columns[c]).dtype}")
    for c, width in zip(DYNAMIC, SEQ_LENS):
        if columns[c].ndim != 2 or columns[c].shape[1] != width:
            raise DataFormatError(f"{path}: column {c} must be lists of {width} ids, found shape {columns[c].shape}")
        bad = np.flatnonzero((columns[c + "_length"] < 0) | (columns[c + "_length"] > width))
        if len(bad):
            raise DataFormatError(f"{path}, row {bad[0]}: {c}_length={columns[c + '_length'][bad[0]]} not in [0, {width}]")
    label = columns["label"]
    if n and not np.isin(label, (0, 1)).all():
        raise DataFormatError(f"{path}: label must be 0 or 1, found {sorted(set(np.unique(label)) - {0, 1})[:5]}")
    names = STATIC + DYNAMIC + AD
    limits = [m for group in max_idxs for m in group]
    for name, limit in zip(names, limits):
        values = columns[name]
        if values.size and (values.min() < 0 or values.max() > limit):
            raise DataFormatError(
                f"{path}: field {name} has ids in [{values.min()}, {values.max()}] but "
                f"hyper_parameters.max_idxs allows [0, {limit}] (set max_idxs to the data's largest ids)")
    ids = np.concatenate([np.stack([columns[c] for c in STATIC], axis=1).reshape(n, -1)]
                         + [columns[c].reshape(n, -1) for c in DYNAMIC]
                         + [np.stack([columns[c] for c in AD], axis=1).reshape(n, -1)], axis=1).astype(np.int64)
    lengths = np.stack([columns[c] for c in LENGTHS], axis=1).reshape(n, -1).astype(np.int64)
    return Rows(columns["aid"].astype(np.int64), label.astype(np.float32), ids, lengths)


def load_rows(files, max_idxs):
    """Read and check data files (npz/pkl), concatenated in the given order."""
    if len(max_idxs) != 3 or [len(g) for g in max_idxs] != [len(STATIC), len(DYNAMIC), len(AD)]:
        raise DataFormatError(f"hyper_parameters.max_idxs must be [[{len(STATIC)} static], "
                              f"[{len(DYNAMIC)} multi-hot], [{len(AD)} ad]] largest ids, got {max_idxs}")
    parts = [to_rows(read_columns(p), p, max_idxs) for p in files]
    return Rows.concat(parts)


def data_files(files):
    """The data files (npz/pkl) among ``files``; other files (a README, checksums) are ignored."""
    return [f for f in files if f.endswith(EXTENSIONS)]


def split_stages(files, folder):
    """The stage-1 and stage-2 files of a test folder (names containing 'stage1' / 'stage2')."""
    stage1 = [f for f in files if "stage1" in os.path.basename(f)]
    stage2 = [f for f in files if "stage2" in os.path.basename(f)]
    if not stage1 or not stage2:
        raise DataFormatError(f"{folder}: expected files named *stage1*.npz|pkl and *stage2*.npz|pkl, "
                              f"found {[os.path.basename(f) for f in files]}")
    return stage1, stage2

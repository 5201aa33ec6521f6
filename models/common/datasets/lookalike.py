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
import zipfile

import numpy as np
import pandas as pd

from models.common.data import CachedDataset, Chunk, DataFormatError
from models.common.features import GroupKey, Label, Schema, SequenceFeature, SparseFeature
from models.common.spec import Param, positive_int

STATIC = ["carrier", "consumptionAbility", "LBS", "age", "education", "gender", "house"]
DYNAMIC = ["interest1", "interest2", "interest3", "kw1", "kw2", "topic1", "topic2"]
SEQ_LENS = [10, 10, 10, 5, 5, 5, 5]
AD = ["advertiserId", "campaignId", "creativeSize", "adCategoryId", "productId", "productType"]
LENGTHS = [f + "_length" for f in DYNAMIC]
COLUMNS = ["label", "aid"] + STATIC + DYNAMIC + LENGTHS + AD
EXTENSIONS = (".npz", ".pkl")
CONFIG_SPEC = {
    "hyper_parameters.max_idxs": Param(list, non_empty=True, items=Param(list, non_empty=True, items=Param(int, min=0)),
                                       help="largest id of each field: [[7 static], [7 multi-hot], [6 ad]]"),
    "hyper_parameters.embed_dim": positive_int(help="embedding size of every field"),
}


def schema(config):
    """The declared features; vocabulary sizes from hyper_parameters.max_idxs (largest id per field,
    PaddleRec's layout [[7 static], [7 multi-hot], [6 ad]])."""
    max_idxs = config.get("hyper_parameters.max_idxs")
    if (not isinstance(max_idxs, list) or len(max_idxs) != 3
            or [len(g) if isinstance(g, list) else None for g in max_idxs] != [len(STATIC), len(DYNAMIC), len(AD)]):
        raise DataFormatError(f"hyper_parameters.max_idxs must be [[{len(STATIC)} static], "
                              f"[{len(DYNAMIC)} multi-hot], [{len(AD)} ad]] largest ids, got {max_idxs}")
    dim = config.get("hyper_parameters.embed_dim")
    static, dynamic, ad = max_idxs
    return Schema([Label("label"), GroupKey("aid")]
                  + [SparseFeature(n, m + 1, dim) for n, m in zip(STATIC, static)]
                  + [SequenceFeature(n, m + 1, dim, max_len=w) for n, m, w in zip(DYNAMIC, dynamic, SEQ_LENS)]
                  + [SparseFeature(n, m + 1, dim) for n, m in zip(AD, ad)])


def read_columns(path):
    """{column: array} of one file (.npz or .pkl); multi-hot columns as 2-D arrays."""
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [c for c in COLUMNS if c not in data.files]
                if missing:
                    raise DataFormatError(f"{path}: missing column(s) {missing}")
                return {c: data[c] for c in COLUMNS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # not a zip, truncated, object arrays
            raise DataFormatError(f"{path}: not a readable .npz file ({error})") from None
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
                    values = np.stack(values) if len(values) else np.zeros((0, SEQ_LENS[DYNAMIC.index(c)]), np.int64)
                except ValueError:
                    raise DataFormatError(f"{path}: column {c} holds id lists of different lengths") from None
            columns[c] = values
        return columns
    raise DataFormatError(f"{path}: unknown data file type (expected one of {EXTENSIONS})")


class LookalikeParser:
    """Reads a whole .npz/.pkl file (these formats cannot be streamed) as one chunk; the shared
    layer checks ids, lengths and labels against the schema (file and row in every error)."""

    signature = "lookalike-npz-pkl:1"

    def read(self, path, schema, skip_bad_lines=False):
        columns = read_columns(path)
        n = len(columns["label"])
        for c in COLUMNS:
            if len(columns[c]) != n:
                raise DataFormatError(f"{path}: column {c} has {len(columns[c])} rows, label has {n}")
            if not np.issubdtype(np.asarray(columns[c]).dtype, np.integer):
                raise DataFormatError(f"{path}: column {c} must hold integers, found {np.asarray(columns[c]).dtype}")
        for c, width in zip(DYNAMIC, SEQ_LENS):
            if columns[c].ndim != 2 or columns[c].shape[1] != width:
                raise DataFormatError(f"{path}: column {c} must be lists of {width} ids, found shape {columns[c].shape}")
        yield Chunk(columns, np.arange(n), unit="row")


def data_files(files):
    """The data files (npz/pkl) among ``files``; other files (a README, checksums) are ignored."""
    return [f for f in files if f.endswith(EXTENSIONS)]


class RecDataset(CachedDataset):
    """The data files (.npz / trusted .pkl) among ``file_list``, converted once into the columnar
    cache; other files (a README, checksums) are ignored. Meta-learning groups the rows by ``aid``
    (models/common/meta_model.py)."""
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)

    def __init__(self, file_list, config):
        files = data_files(file_list)
        if not files:
            raise DataFormatError(f"no .npz/.pkl files among {file_list}")
        super().__init__(files, config, schema(config), LookalikeParser())

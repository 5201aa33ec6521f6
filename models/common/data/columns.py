"""Datasets over named columns: served as batches ``{name: array}`` by ``take(indices)``, one
fancy-index per block."""
import os

import numpy as np
import paddle

from models.common.artifacts import fingerprint, read_manifest
from models.common.data.cache import ColumnarCache, _Progress, _say, cache_folder_for
from models.common.data.parsers import DataFormatError


class ColumnDataset(paddle.io.Dataset):
    """Row blocks of one or more files ({'int': [n, Ki], 'float': [n, Kf]} arrays or memmaps) served
    as batches ``{column name: array}`` by ``take(indices)``: one fancy-index per block and file."""

    def __init__(self, schema, parts):
        self.schema = schema
        self.parts = list(parts)
        sizes = [len(p["int"]) for p in self.parts]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.skipped_lines = 0

    def __len__(self):
        return int(self.starts[-1])

    def _block(self, name, indices):
        if len(self.parts) == 1:
            return np.asarray(self.parts[0][name][indices])
        file_of = np.searchsorted(self.starts, indices, side="right") - 1
        first = file_of[0]
        if (file_of == first).all():
            return np.asarray(self.parts[first][name][indices - self.starts[first]])
        out = np.empty((len(indices), self.schema.widths[name]), self.schema.block_dtypes()[name])
        for f in np.unique(file_of):
            where = file_of == f
            out[where] = self.parts[f][name][indices[where] - self.starts[f]]
        return out

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return self.schema.unpack({name: self._block(name, indices) for name in ("int", "float")})

    def __getitem__(self, index):
        return {k: v[0] for k, v in self.take([index]).items()}

    def column(self, name):
        """One column of every row (e.g. a task id to group by), in memory."""
        slot = self.schema.slots[name]
        return np.concatenate([np.asarray(slot.read(p[slot.block])) for p in self.parts])

    def in_memory(self):
        """The same rows copied into RAM (the benchmark's in-memory reference)."""
        copy = ColumnDataset(self.schema, [{k: np.array(v) for k, v in p.items()} for p in self.parts])
        copy.skipped_lines = self.skipped_lines
        return copy


class CachedDataset(ColumnDataset):
    """``file_list`` converted once (per file) into the columnar cache and memory-mapped.

    ``runner.data_cache_dir`` picks the cache folder (default: ``.rec_cache`` beside the data);
    ``runner.skip_bad_lines`` drops malformed rows (counted in ``skipped_lines``) instead of failing.
    ``identity`` says what the rows are, so that a checkpoint can record what it was trained on and
    an evaluation refuse other data: the schema's fingerprint, the id space of the folders'
    manifests (None without one) and the files' names of each vector column's components (a CSV
    header). Files of one dataset must agree on the last two (else an error names both files); a
    parser that tells formats apart (``format_of``) must find one format in all of them.
    """

    def __init__(self, file_list, config, schema, parser, say=_say):
        skip = bool(config.get("runner.skip_bad_lines")) if config is not None else False
        folder = cache_folder_for(file_list, config)
        if hasattr(parser, "format_of"):
            same(file_list, parser.format_of, "format")
        progress = _Progress(say)
        parts, skipped, names = [], 0, []
        for path in file_list:
            progress.start()
            blocks, meta = ColumnarCache(path, schema, parser, folder, skip).open_or_build(progress, say)
            parts.append(blocks)
            skipped += meta.get("skipped", 0)
            names.append(meta.get("column_names") or {})
        super().__init__(schema, parts)
        self.files, self.skipped_lines, self.cache_dir = list(file_list), skipped, folder
        folders = {path: os.path.dirname(os.path.abspath(path)) for path in file_list}
        spaces = {f: folder_id_space(f) for f in set(folders.values())}  # one manifest read per folder
        self.identity = {"schema": fingerprint(schema.signature()),
                         "id_space": same(file_list, lambda path: spaces[folders[path]], "id space (manifest.json)"),
                         "column_names": same(file_list, dict(zip(file_list, names)).get, "column names")}


def refuse_rows(dataset, mask, what):
    """A DataFormatError naming the file and row of the first row of ``dataset`` (a CachedDataset)
    where ``mask`` is true, saying ``what`` is wrong with it; nothing when no row is."""
    rows = np.flatnonzero(mask)
    if len(rows):
        part = int(np.searchsorted(dataset.starts, rows[0], side="right")) - 1
        raise DataFormatError(f"{dataset.files[part]}, row {int(rows[0] - dataset.starts[part]) + 1}: {what}"
                              + (f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""))


def folder_id_space(folder):
    """The id space the manifest of ``folder`` records, or None."""
    manifest = read_manifest(folder)
    return (manifest or {}).get("fingerprints", {}).get("id_space")


def _short(value, most=120):
    text = repr(value)
    return text if len(text) <= most else text[:most] + "..."


def same(files, value_of, what):
    """``value_of(file)``, which must be the same for every file of ``files``; -> that value."""
    values = [value_of(path) for path in files]
    for path, value in zip(files, values):
        if value != values[0]:
            raise DataFormatError(f"{files[0]} and {path} differ in their {what} ({_short(values[0])} vs "
                                  f"{_short(value)}): one dataset reads files of one kind")
    return values[0] if values else None


class RowRange(paddle.io.Dataset):
    """Rows [start, stop) of a dataset that has ``take`` (e.g. a held-out validation tail)."""

    def __init__(self, dataset, start, stop):
        self.dataset, self.start, self.stop = dataset, int(start), int(stop)
        self.skipped_lines = 0

    def __len__(self):
        return self.stop - self.start

    def take(self, indices):
        return self.dataset.take(np.asarray(indices, dtype=np.int64) + self.start)

    def __getitem__(self, index):
        return {k: v[0] for k, v in self.take([index]).items()}


class ArrayDataset(paddle.io.Dataset):
    """Named columns held in memory (numpy arrays with equal first dimension); ``take`` returns
    ``{name: array}``. For small readers and tests that need no cache."""

    def __init__(self, columns, names):
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        self.columns = dict(zip(names, columns))
        self.skipped_lines = 0

    def __len__(self):
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, index):
        return {k: c[index] for k, c in self.columns.items()}

    def take(self, indices):
        return {k: c[indices] for k, c in self.columns.items()}

"""Datasets over named columns: served as batches ``{name: array}`` by ``take(indices)``, one
fancy-index per block."""
import numpy as np
import paddle

from models.common.data.cache import ColumnarCache, _Progress, _say, cache_folder_for


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
    """

    def __init__(self, file_list, config, schema, parser, say=_say):
        skip = bool(config.get("runner.skip_bad_lines")) if config is not None else False
        folder = cache_folder_for(file_list, config)
        progress = _Progress(say)
        parts, skipped = [], 0
        for path in file_list:
            progress.start()
            blocks, meta = ColumnarCache(path, schema, parser, folder, skip).open_or_build(progress, say)
            parts.append(blocks)
            skipped += meta.get("skipped", 0)
        super().__init__(schema, parts)
        self.skipped_lines = skipped
        self.cache_dir = folder


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

"""Declared features: what a data set holds, declared once and used by its reader, the columnar
cache and the model (in the spirit of torch-rechub's SparseFeature / DenseFeature / SequenceFeature).

- ``SparseFeature``: one id per row, in ``[0, vocab_size)``; embedded in a table of ``embed_dim``
  columns, its own or the one of the feature named by ``shared_with``.
- ``DenseFeature``: a float scalar (``dim=1``) or a vector of width ``dim`` (e.g. a pretrained
  user vector).
- ``SequenceFeature``: up to ``max_len`` ids per row, padded, with the row's length in a column
  ``<name>_length``; pooled (``mean`` / ``sum``) over the first ``length`` ids.
- ``GroupKey``: a non-negative integer that groups rows (a task id) and is not embedded.
- ``Label``: a target; ``values`` lists the allowed values (``None``: any finite number).

A ``Schema`` maps the features onto two row-major blocks, ``int`` (ids and lengths) and ``float``
(dense values and labels), which is how the cache stores a file and how a batch is fetched (one
fancy-index per block). ``Schema.pack`` checks a parsed chunk against the declarations: an id
outside the vocabulary, a non-integer id, a label outside ``values`` or a non-finite value is
reported with the row's location, never stored.
"""
import json

import numpy as np

INT32_MAX = np.iinfo(np.int32).max


class Feature:
    kind = None

    def __init__(self, name):
        if not isinstance(name, str) or not name:
            raise ValueError(f"feature name must be a non-empty string, got {name!r}")
        self.name = name

    def describe(self):
        """The declaration as plain data: part of the cache key."""
        return {"kind": self.kind, **{k: v for k, v in vars(self).items()}}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _positive(feature, key, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"feature {feature}: {key} must be a positive integer, got {value!r}")
    return int(value)


class SparseFeature(Feature):
    kind = "sparse"

    def __init__(self, name, vocab_size, embed_dim, shared_with=None):
        super().__init__(name)
        self.vocab_size = _positive(name, "vocab_size", vocab_size)
        self.embed_dim = _positive(name, "embed_dim", embed_dim)
        self.shared_with = shared_with


class SequenceFeature(SparseFeature):
    kind = "sequence"

    def __init__(self, name, vocab_size, embed_dim, max_len, pooling="mean", shared_with=None):
        super().__init__(name, vocab_size, embed_dim, shared_with)
        self.max_len = _positive(name, "max_len", max_len)
        if pooling not in ("mean", "sum"):
            raise ValueError(f"feature {name}: pooling must be 'mean' or 'sum', got {pooling!r}")
        self.pooling = pooling

    @property
    def length_name(self):
        return f"{self.name}_length"


class DenseFeature(Feature):
    kind = "dense"

    def __init__(self, name, dim=1):
        super().__init__(name)
        self.dim = _positive(name, "dim", dim)


class GroupKey(Feature):
    """A non-negative integer that groups rows and is not embedded (a task, an ad, a user for GAUC)."""
    kind = "key"


class Label(Feature):
    kind = "label"

    def __init__(self, name, values=(0, 1)):
        super().__init__(name)
        self.values = None if values is None else [float(v) for v in values]


class _Slot:
    """Where a named column lives: block ('int' or 'float'), first column, width (None: 1-D)."""

    def __init__(self, block, start, width):
        self.block, self.start, self.width = block, start, width

    def read(self, block):
        if self.width is None:
            return block[:, self.start]
        return block[:, self.start:self.start + self.width]


class Schema:
    """An ordered set of features and their storage layout."""

    def __init__(self, features):
        self.features = list(features)
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"schema declares feature(s) {duplicates} more than once")
        by_name = {f.name: f for f in self.features}
        for f in self.features:
            if isinstance(f, SparseFeature) and f.shared_with is not None:
                owner = by_name.get(f.shared_with)
                if not isinstance(owner, SparseFeature):
                    raise ValueError(f"feature {f.name}: shared_with={f.shared_with!r} is not a sparse feature")
                if owner.embed_dim != f.embed_dim:
                    raise ValueError(f"feature {f.name}: embed_dim {f.embed_dim} differs from the table it "
                                     f"shares ({owner.name}: {owner.embed_dim})")
        self.by_name = by_name
        big = any(isinstance(f, SparseFeature) and f.vocab_size - 1 > INT32_MAX for f in self.features)
        self.int_dtype = np.dtype(np.int64 if big else np.int32)  # storage; batches are always int64
        self.slots, widths = {}, {"int": 0, "float": 0}

        def place(name, block, width):
            self.slots[name] = _Slot(block, widths[block], width)
            widths[block] += width or 1

        for f in self.features:
            if isinstance(f, SequenceFeature):
                place(f.name, "int", f.max_len)
                place(f.length_name, "int", None)
            elif isinstance(f, (SparseFeature, GroupKey)):
                place(f.name, "int", None)
            elif isinstance(f, DenseFeature):
                place(f.name, "float", None if f.dim == 1 else f.dim)
            else:
                place(f.name, "float", None)
        self.widths = widths

    # ---- declarations -----------------------------------------------------------------
    def of_kind(self, *classes):
        return [f for f in self.features if isinstance(f, classes)]

    @property
    def labels(self):
        return self.of_kind(Label)

    def __getitem__(self, name):
        return self.by_name[name]

    def signature(self):
        """A stable text form of the declarations (part of the cache key)."""
        return json.dumps([f.describe() for f in self.features], sort_keys=True)

    # ---- storage ----------------------------------------------------------------------
    def block_dtypes(self):
        return {"int": self.int_dtype, "float": np.dtype(np.float32)}

    def unpack(self, blocks):
        """{'int': [B, Ki], 'float': [B, Kf]} -> {column name: array}; ids as int64."""
        ints = blocks["int"].astype(np.int64, copy=False)
        return {name: slot.read(ints if slot.block == "int" else blocks["float"])
                for name, slot in self.slots.items()}

    def pack(self, columns, where):
        """Check parsed columns ({column name: array}, all with n rows) and pack them into blocks.

        ``where(i)`` -> location text of row i (e.g. ``"file.txt, line 12"``).
        -> (blocks, bad): ``bad`` is None when every row is valid, else (boolean mask of bad rows,
        message about the first bad row). Callers either raise the message or drop the rows.
        """
        n = len(next(iter(columns.values()))) if columns else 0
        bad = np.zeros(n, dtype=bool)
        first = None  # (row, message)

        def flag(mask, message):
            nonlocal first
            rows = np.flatnonzero(mask)
            if len(rows):
                bad[rows] = True
                if first is None or rows[0] < first[0]:
                    first = (int(rows[0]), message(int(rows[0])))

        blocks = {name: np.zeros((n, width), dtype) for (name, width), dtype
                  in zip(self.widths.items(), self.block_dtypes().values())}
        for name, slot in self.slots.items():
            if name not in columns:
                raise ValueError(f"the parser produced no column {name!r} (declared in the schema)")
            values = np.asarray(columns[name])
            expected = (n,) if slot.width is None else (n, slot.width)
            if values.shape != expected:
                raise ValueError(f"column {name!r} has shape {values.shape}, the schema expects {expected}")
            feature = self.by_name.get(name)
            rowwise = values.reshape(n, slot.width or 1)
            if slot.block == "int":
                limit, what = self._int_limit(name, feature)
                if values.dtype.kind == "f":
                    finite = np.isfinite(rowwise).all(axis=1)
                    flag(~finite, lambda r, v=rowwise, nm=name: f"{nm} has value {_fmt(v[r][~np.isfinite(v[r])][0])}, expected an integer")
                    whole = (rowwise == np.floor(rowwise)).all(axis=1) | ~finite
                    flag(~whole, lambda r, v=rowwise, nm=name: f"{nm} has value {_fmt(v[r][v[r] != np.floor(v[r])][0])}, expected an integer")
                elif values.dtype.kind not in "iub":
                    raise ValueError(f"column {name!r} holds {values.dtype}, expected integers")
                with np.errstate(invalid="ignore"):
                    outside = ((rowwise < 0) | (rowwise > limit)).any(axis=1)
                flag(outside, lambda r, v=rowwise, nm=name, w=what, lim=limit: f"{nm} has value "
                     f"{_fmt(v[r][(v[r] < 0) | (v[r] > lim)][0])} outside [0, {lim}] ({w})")
            else:
                finite = np.isfinite(rowwise.astype(np.float64, copy=False)).all(axis=1)
                flag(~finite, lambda r, v=rowwise, nm=name: f"{nm} has value {_fmt(v[r][~np.isfinite(v[r])][0])}, expected a finite number")
                if isinstance(feature, Label) and feature.values is not None:
                    allowed = np.isin(rowwise, feature.values).all(axis=1) | ~finite
                    flag(~allowed, lambda r, v=rowwise, nm=name, f=feature: f"label {nm} has value "
                         f"{_fmt(v[r][0])}, expected one of {[_fmt(x) for x in f.values]}")
            target = blocks[slot.block]
            clean = np.where(bad.reshape((n,) + (1,) * (values.ndim - 1)), 0, values) if bad.any() else values
            if slot.width is None:
                target[:, slot.start] = clean
            else:
                target[:, slot.start:slot.start + slot.width] = clean
        if first is None:
            return blocks, None
        return blocks, (bad, f"{where(first[0])}: {first[1]}")

    def _int_limit(self, name, feature):
        if isinstance(feature, SparseFeature):
            return feature.vocab_size - 1, f"vocabulary of {feature.name}: {feature.vocab_size} ids"
        if isinstance(feature, GroupKey):
            return int(np.iinfo(self.int_dtype).max), "a non-negative key"
        owner = self.by_name[name[:-len("_length")]]
        return owner.max_len, f"max_len of {owner.name}"


def _fmt(value):
    """A number as a person writes it: 2, not 2.0 or np.float64(2.0)."""
    value = float(value)
    return int(value) if value.is_integer() else value

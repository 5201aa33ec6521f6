#!/usr/bin/env python3
"""Raw Ali-CCP (Tianchi data set 408) -> PaddleRec's Ali-CCP format, which ESMM and MMoE read.

    python datasets/ali-ccp/preprocess.py --raw DIR --out OUT [--replace] [--format columnar --max-len FIELD=N ...]
    python datasets/ali-ccp/preprocess.py --paddlerec DIR --out OUT [--replace]

DIR holds ``sample_skeleton_{train,test}.csv`` and ``common_features_{train,test}.csv``:

    skeleton:        sample_id,click,conversion,common_feature_index,feature_num,feature_list
    common features: common_feature_index,feature_num,feature_list
    feature_list:    features joined by \\x01, each  field_id \\x02 feature_id \\x03 value

Each impression's features are its own skeleton features plus the common (user/session)
features of its ``common_feature_index``. Kept: the 23 fields ESMM uses (models/common/datasets/aliccp.py
FIELDS; values are dropped, as PaddleRec's data has none). Feature ids are remapped to
``1 .. N-1`` in order of first appearance in the training data (train rows, each row's
fields in FIELDS order); test ids never seen in training are dropped (their field may become
empty). Output, one impression per line (fields in FIELDS order):

    OUT/train_data/train.txt, OUT/test_data/test.txt:  sample_id,click,purchase,<field>:<id>,...
    OUT/meta.json: sparse_feature_number (N), rows, clicks, purchases, dropped test ids, the
                   SHA-256s of the raw files (also in OUT/sources.sha256), id_space

``--format columnar`` writes our columnar CSV instead (header ``click,purchase,<field>:0,...,
<field>_length,...``: each field's ids padded with 0 to its ``--max-len`` width, which must equal
the config's ``hyper_parameters.max_len.<field>``); the readers take both forms.

click and conversion are only the label columns: no feature is computed from them.

Bounded memory and bulk parsing: files are read in blocks of whole lines, each block parsed with
numpy (separators, field names packed into integers, ids by one np.fromstring); the filtered
common features are stored on disk (a memory-mapped array) and gathered per block. Every row
is checked (column count, feature_num against the features present, known common index,
numbers): an error names file and line.

``--paddlerec DIR`` installs PaddleRec's preprocessed ``traindata_10w.csv`` / ``testdata_10w.csv``
as they are (their ids: PaddleRec's vocabulary, sparse_feature_number 737946).

Outputs (models/common/artifacts.py): each data folder is written in a hidden staging folder and
renamed into place with a ``manifest.json`` (its files, bytes, rows, and the ``id_space``
fingerprint of the id remapping); meta.json (and sources.sha256) are written atomically, last,
and carry the same ``id_space``. A non-empty train_data/test_data or an earlier meta.json is
refused (exit status 2) unless ``--replace``: then the earlier run's files are all replaced, never
mixed with the new ones. A killed run leaves only hidden leftovers, removed by the next run.
"""
import argparse
import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
from models.common.datasets.aliccp import DEFAULT_MAX_LEN, FIELDS  # noqa: E402
from models.common.data import iter_line_blocks, parse_spaced_numbers  # noqa: E402
from models.common.artifacts import (ArtifactError, fingerprint, run_outputs, sha256_file, write_atomic,  # noqa: E402
                                     write_json)

BLOCK_BYTES = 4 << 20  # common features (long lines, few of them)
SKELETON_BLOCK_BYTES = 256 << 10  # skeleton lines gain ~800 common pairs each: keeps a block ~1M pairs
FIELD_CODES = np.array([int.from_bytes(f.encode().ljust(8, b"\0"), "little") for f in FIELDS], dtype=np.uint64)
FIELD_ORDER = np.argsort(FIELD_CODES)
SORTED_CODES = FIELD_CODES[FIELD_ORDER]
FIELD_TEXT = [f.encode() for f in FIELDS]
SPLITS = ("train", "test")  # the data folders <split>_data (runner.train_data_dir / test_data_dir)
SIDE_FILES = ("meta.json", "sources.sha256")
RAW_FILES = ("sample_skeleton_train.csv", "common_features_train.csv", "sample_skeleton_test.csv",
             "common_features_test.csv")
PADDLEREC_FILES = {"train": "traindata_10w.csv", "test": "testdata_10w.csv"}
PADDLEREC_SPARSE_FEATURE_NUMBER = 737946  # PaddleRec's vocabulary (models/multitask/esmm/config_bigdata.yaml)


class RawDataError(ValueError):
    pass


def _hex_key(a, start, end):
    """uint64 of the first (up to) 16 hex digits of each a[start:end] (the common feature index)."""
    width = np.minimum(end - start, 16)
    pos = start[:, None] + np.arange(16)
    valid = np.arange(16) < width[:, None]
    chars = np.where(valid, a[np.minimum(pos, len(a) - 1)], ord("0")).astype(np.int64)
    digit = np.where(chars <= ord("9"), chars - ord("0"), (chars | 32) - ord("a") + 10)
    if ((digit < 0) | (digit > 15))[valid].any() or (end - start < 1).any():
        return None
    key = np.zeros(len(start), dtype=np.uint64)
    for i in range(16):
        key = np.where(valid[:, i], (key << np.uint64(4)) | digit[:, i].astype(np.uint64), key)
    return key


def parse_block(raw, first_line, path, columns, numeric_columns):
    """Lines of ``columns`` comma-separated columns, the last a feature list.

    -> dict: ``cols`` {column index: float array} for ``numeric_columns``, ``key`` (uint64 common
    index of column 3 for skeletons / column 0 for common features, per line), ``line`` numbers,
    and the kept pairs ``pair_line`` (row index), ``pair_field`` (FIELDS index), ``pair_feat``."""
    a = np.frombuffer(raw, dtype=np.uint8)
    nl = np.flatnonzero(a == 10)
    starts = np.r_[0, nl[:-1] + 1]
    ends = nl - (a[np.maximum(nl - 1, 0)] == 13)  # CRLF
    visible = np.bincount(np.searchsorted(nl, np.flatnonzero(a > 32)), minlength=len(nl))
    comma = np.flatnonzero(a == 44)
    per_line = np.bincount(np.searchsorted(nl, comma), minlength=len(nl))
    rows = np.flatnonzero(visible > 0)
    bad = rows[per_line[rows] != columns - 1]
    if len(bad):
        raise RawDataError(f"{path}, line {first_line + bad[0]}: expected {columns} comma-separated columns, "
                           f"found {per_line[bad[0]] + 1}")
    comma_of = comma.reshape(-1, columns - 1) if len(comma) else np.zeros((0, columns - 1), np.int64)
    s, e = starts[rows], ends[rows]
    col_start = np.column_stack([s, comma_of + 1])
    col_end = np.column_stack([comma_of, e])
    list_start, list_end = col_start[:, -1], col_end[:, -1]
    n = len(rows)
    # Feature tokens: split the feature lists at \x01.
    sep = np.flatnonzero(a == 1)
    sep_line = np.searchsorted(nl, sep)
    row_of_line = np.full(len(nl), -1)
    row_of_line[rows] = np.arange(n)
    sep_row = row_of_line[sep_line]
    nonempty = list_end > list_start
    t_start = np.sort(np.r_[list_start[nonempty], sep + 1])
    t_end = np.sort(np.r_[list_end[nonempty], sep])
    t_row = np.searchsorted(s, t_start, side="right") - 1
    if (sep_row < 0).any() or ((sep < list_start[np.maximum(sep_row, 0)]) & (sep_row >= 0)).any():
        line = sep_line[0] if (sep_row < 0).any() else rows[sep_row[sep < list_start[sep_row]][0]]
        raise RawDataError(f"{path}, line {first_line + line}: a \\x01 outside the feature list")
    tokens_per_row = np.bincount(t_row, minlength=n)
    x2, x3 = np.flatnonzero(a == 2), np.flatnonzero(a == 3)
    tok2 = np.searchsorted(t_start, x2, side="right") - 1
    tok3 = np.searchsorted(t_start, x3, side="right") - 1
    c2, c3 = np.bincount(tok2, minlength=len(t_start)), np.bincount(tok3, minlength=len(t_start))
    p2, p3 = np.full(len(t_start), -1), np.full(len(t_start), -1)
    p2[tok2], p3[tok3] = x2, x3
    bad_tok = (c2 != 1) | (c3 != 1) | (p2 <= t_start) | (p3 <= p2 + 1) | (p3 >= t_end) | (p2 - t_start > 8)
    if bad_tok.any():
        i = int(np.flatnonzero(bad_tok)[0])
        text = bytes(a[t_start[i]:t_end[i]]).decode("latin-1")
        raise RawDataError(f"{path}, line {first_line + rows[t_row[i]]}: feature {text!r} is not "
                           f"field\\x02id\\x03value (or its field name is longer than 8 bytes)")
    # Field names -> FIELDS index (-1: a field ESMM does not use).
    offs = np.arange(8)
    gather = np.minimum(t_start[:, None] + offs, len(a) - 1)
    kb = np.where(offs < (p2 - t_start)[:, None], a[gather], 0).astype(np.uint8)
    codes = np.ascontiguousarray(kb).view("<u8").reshape(-1)
    where = np.minimum(np.searchsorted(SORTED_CODES, codes), len(SORTED_CODES) - 1)
    field = np.where(SORTED_CODES[where] == codes, FIELD_ORDER[where], -1)
    # Numbers: the numeric header columns, then every feature id, in byte order.
    mark = np.zeros(len(a) + 1, np.int64)
    for c in numeric_columns:
        np.add.at(mark, col_start[:, c], 1)
        np.add.at(mark, col_end[:, c], -1)
    np.add.at(mark, p2 + 1, 1)
    np.add.at(mark, p3, -1)
    b = np.where(np.cumsum(mark[:-1]) > 0, a, 32).astype(np.uint8)
    values = parse_spaced_numbers(b)
    k = len(numeric_columns)
    if values is None or len(values) != n * k + len(t_start):
        for r in range(n):  # slow path: name the first line with a non-number
            pieces = [bytes(a[col_start[r, c]:col_end[r, c]]) for c in numeric_columns]
            mine = np.flatnonzero(t_row == r)
            pieces += [bytes(a[p2[i] + 1:p3[i]]) for i in mine]
            for piece in pieces:
                try:
                    float(piece)
                except ValueError:
                    raise RawDataError(f"{path}, line {first_line + rows[r]}: {piece.decode('latin-1')!r} is not "
                                       f"a number") from None
        raise RawDataError(f"{path}, lines {first_line}-{first_line + len(nl) - 1}: could not be parsed")
    row_first = np.cumsum(k + tokens_per_row) - (k + tokens_per_row)
    cols = {c: values[row_first + j] for j, c in enumerate(numeric_columns)}
    feat = values[row_first[t_row] + k + (np.arange(len(t_start)) - (np.cumsum(tokens_per_row) - tokens_per_row)[t_row])]
    return {"cols": cols, "tokens": tokens_per_row, "line": first_line + rows, "a": a,
            "col_start": col_start, "col_end": col_end, "pair_row": t_row[field >= 0],
            "pair_field": field[field >= 0], "pair_feat": feat[field >= 0]}


def check_counts(parsed, path, num_col):
    """feature_num (column ``num_col``) must equal the number of features on the line."""
    num = parsed["cols"][num_col]
    bad = np.flatnonzero(num != parsed["tokens"])
    if len(bad):
        r = bad[0]
        raise RawDataError(f"{path}, line {parsed['line'][r]}: feature_num is {num[r]:g} but the line has "
                           f"{parsed['tokens'][r]} features")


def check_ids(parsed, path):
    feat = parsed["pair_feat"]
    bad = np.flatnonzero((feat != np.floor(feat)) | (feat < 0) | ~np.isfinite(feat))
    if len(bad):
        raise RawDataError(f"{path}, line {parsed['line'][parsed['pair_row'][bad[0]]]}: feature id "
                           f"{feat[bad[0]]!r} is not a non-negative integer")


class CommonFeatures:
    """The kept (field, id) pairs of every common feature index, on disk (memory-mapped)."""

    def __init__(self, path, work):
        keys, counts, total = [], [], 0
        pairs_path = os.path.join(work, os.path.basename(path) + ".pairs")
        with open(pairs_path, "wb") as out:
            for first_line, raw in iter_line_blocks(path, BLOCK_BYTES):
                p = parse_block(raw, first_line, path, 3, [1])
                check_counts(p, path, 1)
                check_ids(p, path)
                key = _hex_key(p["a"], p["col_start"][:, 0], p["col_end"][:, 0])
                if key is None:
                    raise RawDataError(f"{path}, lines {first_line}-: a common_feature_index is not hexadecimal")
                order = np.lexsort((p["pair_field"], p["pair_row"]))  # per row, fields in FIELDS order
                rec = np.empty(len(order), dtype=[("field", "i1"), ("feat", "<i8")])
                rec["field"], rec["feat"] = p["pair_field"][order], p["pair_feat"][order].astype(np.int64)
                rec.tofile(out)
                keys.append(key)
                counts.append(np.bincount(p["pair_row"], minlength=len(key)))
                total += len(order)
        self.keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        order = np.argsort(self.keys, kind="stable")
        self.keys = self.keys[order]
        if len(self.keys) > 1 and (self.keys[1:] == self.keys[:-1]).any():
            raise RawDataError(f"{path}: a common_feature_index appears twice")
        starts = np.cumsum(counts) - counts
        self.starts, self.counts = starts[order], counts[order]
        dtype = np.dtype([("field", "i1"), ("feat", "<i8")])
        self.pairs = np.memmap(pairs_path, dtype=dtype, mode="r") if total else np.zeros(0, dtype)

    def lookup(self, key, lines, path):
        """-> (row of each pair, field, feat) of the common features of each key."""
        at = np.minimum(np.searchsorted(self.keys, key), max(len(self.keys) - 1, 0))
        missing = np.flatnonzero((len(self.keys) == 0) | (self.keys[at] != key))
        if len(missing):
            raise RawDataError(f"{path}, line {lines[missing[0]]}: its common_feature_index is not in the "
                               f"common features file")
        counts, starts = self.counts[at], self.starts[at]
        row = np.repeat(np.arange(len(key)), counts)
        index = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
        taken = self.pairs[index]
        return row, taken["field"].astype(np.int64), taken["feat"]


class Vocabulary:
    """(field, raw id) -> 1, 2, ... in order of first appearance (training data)."""

    def __init__(self):
        self.keys, self.ids, self.size = np.zeros(0, np.int64), np.zeros(0, np.int64), 0

    def lookup(self, keys):
        at = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        found = (len(self.keys) > 0) & (self.keys[at] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        return np.where(found, self.ids[at] if len(self.keys) else 0, 0)

    def add(self, keys):
        known = self.lookup(keys) > 0
        if known.all():
            return
        new, first = np.unique(keys[~known], return_index=True)  # sorted
        ids = np.empty(len(new), np.int64)
        ids[np.argsort(first, kind="stable")] = np.arange(self.size + 1, self.size + 1 + len(new))
        self.size += len(new)
        at = np.searchsorted(self.keys, new)  # merge two sorted arrays: one copy, no sort
        self.keys, self.ids = np.insert(self.keys, at, new), np.insert(self.ids, at, ids)


def _digits(values):
    """Decimal text of non-negative ints: (uint8 matrix right-aligned, lengths)."""
    values = values.astype(np.int64)
    width = max(1, int(np.floor(np.log10(max(int(values.max()), 1)))) + 1) if len(values) else 1
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (values[:, None] // powers) % 10
    lengths = np.where(values == 0, 1, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1)
    return (digits + 48).astype(np.uint8), lengths


def format_lines(sample_id, click, buy, pair_row, pair_field, pair_id):
    """Bytes of the output lines, built with numpy (pairs grouped by row, in output order)."""
    n = len(sample_id)
    head_vals = [sample_id, click, buy]
    field_mat = np.zeros((len(FIELDS), 8), np.uint8)
    field_len = np.array([len(t) for t in FIELD_TEXT])
    for i, t in enumerate(FIELD_TEXT):
        field_mat[i, :len(t)] = np.frombuffer(t, np.uint8)
    # token text: header numbers, then "<field>:<id>"; separators "," and a final "\n".
    id_digits, id_len = _digits(pair_id)
    head = [_digits(v) for v in head_vals]
    tok_len = np.concatenate([h[1] for h in head] + [field_len[pair_field] + 1 + id_len])
    tok_row = np.concatenate([np.arange(n)] * 3 + [pair_row])
    tok_rank = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64), np.full(n, 2)]
                              + [3 + np.arange(len(pair_row))])
    order = np.lexsort((tok_rank, tok_row))
    lens = tok_len[order] + 1  # + separator
    starts = np.cumsum(lens) - lens
    out = np.full(int(lens.sum()), ord(","), np.uint8)
    position = np.empty(len(order), np.int64)
    position[order] = starts
    last_of_row = np.r_[np.flatnonzero(tok_row[order][1:] != tok_row[order][:-1]), len(order) - 1]
    out[starts[last_of_row] + lens[last_of_row] - 1] = 10
    offset = 0
    for digits, length in head:
        pos = position[offset:offset + n]
        w = digits.shape[1]
        cols = np.arange(w)
        take = cols >= (w - length)[:, None]
        dest = (pos[:, None] + cols - (w - length)[:, None])[take]
        out[dest] = digits[take]
        offset += n
    pos = position[3 * n:]
    fl = field_len[pair_field]
    take = np.arange(8) < fl[:, None]
    out[(pos[:, None] + np.arange(8))[take]] = field_mat[pair_field][take]
    out[pos + fl] = ord(":")
    w = id_digits.shape[1]
    take = np.arange(w) >= (w - id_len)[:, None]
    out[(pos[:, None] + fl[:, None] + 1 + np.arange(w) - (w - id_len)[:, None])[take]] = id_digits[take]
    return out.tobytes()


def columnar_header(widths):
    names = ["click", "purchase"]
    for f in FIELDS:
        names += [f"{f}:{i}" for i in range(widths[f])] + [f"{f}_length"]
    return ",".join(names) + "\n"


def columnar_rows(click, buy, row, field, ids, widths, lines, path):
    """Our columnar CSV rows (the schema's padded layout): labels, then per field its ids padded
    with 0 to its width and its length. A field with more ids than its width names the line."""
    n = len(click)
    counts = np.zeros((n, len(FIELDS)), np.int64)
    np.add.at(counts, (row, field), 1)
    width = np.array([widths[f] for f in FIELDS])
    over = np.argwhere(counts > width[None, :])
    if len(over):
        r, j = over[0]
        raise RawDataError(f"{path}, line {lines[r]}: field {FIELDS[j]} has {counts[r, j]} ids, more than "
                           f"--max-len {FIELDS[j]}={width[j]}")
    start = np.concatenate([[2], 2 + np.cumsum(width + 1)[:-1]])  # first column of each field
    matrix = np.zeros((n, 2 + int((width + 1).sum())), np.int64)
    matrix[:, 0], matrix[:, 1] = click, buy
    group = row * len(FIELDS) + field  # pairs come grouped by (row, field), in order
    first = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1] if len(group) else np.zeros(0, np.int64)
    rank = np.arange(len(group)) - np.repeat(first, np.diff(np.r_[first, len(group)]))
    matrix[row, start[field] + rank] = ids
    matrix[:, start + width] = counts
    buffer = io.StringIO()
    np.savetxt(buffer, matrix, fmt="%d", delimiter=",")
    return buffer.getvalue().encode()


def convert(split, raw_dir, out_path, work, vocab, learn, widths=None):
    skeleton = os.path.join(raw_dir, f"sample_skeleton_{split}.csv")
    common_path = os.path.join(raw_dir, f"common_features_{split}.csv")
    for path in (skeleton, common_path):
        if not os.path.isfile(path):
            raise RawDataError(f"{path} does not exist")
    common = CommonFeatures(common_path, work)
    stats = {"rows": 0, "clicks": 0, "purchases": 0, "dropped_ids": 0}
    with open(out_path, "wb") as out:
        if widths is not None:
            out.write(columnar_header(widths).encode())
        for first_line, raw in iter_line_blocks(skeleton, SKELETON_BLOCK_BYTES):
            p = parse_block(raw, first_line, skeleton, 6, [0, 1, 2, 4])
            check_counts(p, skeleton, 4)
            check_ids(p, skeleton)
            click, buy = p["cols"][1], p["cols"][2]
            for name, v in (("click", click), ("conversion", buy)):
                bad = np.flatnonzero((v != 0) & (v != 1))
                if len(bad):
                    raise RawDataError(f"{skeleton}, line {p['line'][bad[0]]}: {name} is {v[bad[0]]:g}, expected 0 or 1")
            bad = np.flatnonzero(buy > click)
            if len(bad):
                raise RawDataError(f"{skeleton}, line {p['line'][bad[0]]}: conversion without a click")
            key = _hex_key(p["a"], p["col_start"][:, 3], p["col_end"][:, 3])
            if key is None:
                raise RawDataError(f"{skeleton}, lines {first_line}-: a common_feature_index is not hexadecimal")
            c_row, c_field, c_feat = common.lookup(key, p["line"], skeleton)
            row = np.r_[p["pair_row"], c_row]
            field = np.r_[p["pair_field"], c_field]
            feat = np.r_[p["pair_feat"].astype(np.int64), c_feat]
            # Per row, FIELDS order; within a field: skeleton ids, then common ids (file order).
            order = np.lexsort((np.arange(len(row)), field, row))
            row, field, feat = row[order], field[order], feat[order]
            keys = field.astype(np.int64) * (1 << 48) + feat
            if learn:
                vocab.add(keys)
            ids = vocab.lookup(keys)
            kept = ids > 0
            stats["dropped_ids"] += int((~kept).sum())
            sample_id = p["cols"][0]
            if (sample_id < 0).any() or (sample_id != np.floor(sample_id)).any():
                raise RawDataError(f"{skeleton}: sample ids must be non-negative integers")
            if widths is None:
                out.write(format_lines(sample_id, click, buy, row[kept], field[kept], ids[kept]))
            else:
                out.write(columnar_rows(click, buy, row[kept], field[kept], ids[kept], widths, p["line"], skeleton))
            stats["rows"] += len(click)
            stats["clicks"] += int(click.sum())
            stats["purchases"] += int(buy.sum())
    del common
    return stats


@contextlib.contextmanager
def outputs(out, replace, layout):
    """The run's data folders as Artifacts {split: Artifact} (models.common.artifacts.run_outputs):
    meta.json and sources.sha256 are written last, beside their own run's folders."""
    folders = {f"{split}_data": {"kind": f"Ali-CCP {split} rows ({layout})", "split": split} for split in SPLITS}
    with run_outputs(out, folders, SIDE_FILES, replace, leftovers=("aliccp-work",), data_set="aliccp") as arts:
        yield {split: arts[f"{split}_data"] for split in SPLITS}


def write_side_files(out, meta, sources):
    write_atomic(os.path.join(out, "sources.sha256"),
                 lambda f: f.write("".join(f"{digest}  {name}\n" for name, digest in sources.items())))
    write_json(os.path.join(out, "meta.json"), meta)  # last: a meta.json means the run completed


def preprocess_raw(args, out, widths):
    with outputs(out, args.replace, args.format) as arts:
        work = tempfile.mkdtemp(dir=out, prefix=".aliccp-work.")
        try:
            sources = {name: sha256_file(os.path.join(args.raw, name)) for name in RAW_FILES
                       if os.path.isfile(os.path.join(args.raw, name))}
            vocab = Vocabulary()
            stats = {}
            for split, learn in (("train", True), ("test", False)):
                name = f"{split}.txt"
                stats[split] = convert(split, args.raw, os.path.join(arts[split].path, name), work, vocab, learn,
                                       widths)
                arts[split].rows[name] = stats[split]["rows"]
                print(f"{split}: {stats[split]['rows']} rows, {stats[split]['clicks']} clicks, "
                      f"{stats[split]['purchases']} purchases", flush=True)
            # The ids: the remapping (field, raw id) -> id learnt on the training rows, and the widths.
            vocabulary = hashlib.sha256(vocab.keys.astype("<i8").tobytes() + vocab.ids.astype("<i8").tobytes())
            id_space = fingerprint({"data_set": "aliccp", "vocabulary": vocabulary.hexdigest(),
                                    "sparse_feature_number": vocab.size + 1, "fields": FIELDS, "max_len": widths})
            for art in arts.values():
                art.fingerprints["id_space"] = id_space
        finally:
            shutil.rmtree(work, ignore_errors=True)
    meta = {"sparse_feature_number": vocab.size + 1, "fields": FIELDS, "counts": stats, "format": args.format,
            "max_len": widths, "sources": sources, "id_space": id_space}
    write_side_files(out, meta, sources)
    print(f"test ids never seen in training (dropped): {stats['test']['dropped_ids']}")
    print(f"sparse_feature_number: {vocab.size + 1}  (hyper_parameters.sparse_feature_number)")


def copy_counting_lines(source, target):
    """Copy ``source`` to ``target``; -> its number of lines (a last one without a newline counted)."""
    lines, last = 0, b"\n"
    with open(source, "rb") as f, open(target, "wb") as out:
        for block in iter(lambda: f.read(1 << 20), b""):
            out.write(block)
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def install_paddlerec(args, out):
    """PaddleRec's preprocessed files, copied as they are (their ids: PaddleRec's vocabulary)."""
    for name in PADDLEREC_FILES.values():
        path = os.path.join(args.paddlerec, name)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise RawDataError(f"{path} is empty or missing")
    stats = {}
    with outputs(out, args.replace, "paddlerec") as arts:
        sources = {name: sha256_file(os.path.join(args.paddlerec, name)) for name in PADDLEREC_FILES.values()}
        id_space = fingerprint({"data_set": "aliccp", "vocabulary": "PaddleRec's preprocessed files",
                                "sources": sources})
        for split, name in PADDLEREC_FILES.items():
            rows = copy_counting_lines(os.path.join(args.paddlerec, name), os.path.join(arts[split].path, name))
            arts[split].rows[name] = rows
            arts[split].fingerprints["id_space"] = id_space
            stats[split] = {"rows": rows}
    meta = {"sparse_feature_number": PADDLEREC_SPARSE_FEATURE_NUMBER, "fields": FIELDS, "counts": stats,
            "format": "paddlerec", "max_len": None, "sources": sources, "id_space": id_space,
            "vocabulary": "PaddleRec's (their preprocessed traindata_10w.csv / testdata_10w.csv)"}
    write_side_files(out, meta, sources)
    print(f"installed PaddleRec's preprocessed Ali-CCP files into {out}/{{train_data,test_data}}")
    print(f"sparse_feature_number: {PADDLEREC_SPARSE_FEATURE_NUMBER} (PaddleRec's vocabulary; "
          f"models/multitask/esmm/config_bigdata.yaml)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", help="folder with sample_skeleton_* and common_features_*")
    source.add_argument("--paddlerec", metavar="DIR", help="folder with PaddleRec's preprocessed traindata_10w.csv "
                        "and testdata_10w.csv: installed as they are")
    parser.add_argument("--out", required=True, help="output parent folder")
    parser.add_argument("--replace", action="store_true",
                        help="replace an earlier run's output (without it, a non-empty train_data/test_data or an "
                             "existing meta.json is refused)")
    parser.add_argument("--format", choices=("paddlerec", "columnar"), default="paddlerec",
                        help="paddlerec: sample_id,click,purchase,<field>:<id>,... (default); columnar: our "
                             "columnar CSV, each field padded to its --max-len (the readers take both)")
    parser.add_argument("--max-len", nargs="+", action="extend", default=[], metavar="FIELD=N",
                        help="columnar width of a field (default: models/common/datasets/aliccp.py DEFAULT_MAX_LEN, 1 "
                             "for single-valued fields); must equal the config's hyper_parameters.max_len.<field>")
    args = parser.parse_args(argv)
    widths = None
    if args.format == "columnar":
        if args.paddlerec:
            parser.error("--format columnar converts raw files (--raw); --paddlerec installs PaddleRec's files as they are")
        widths = {f: DEFAULT_MAX_LEN.get(f, 1) for f in FIELDS}
        for item in args.max_len:
            name, _, value = item.partition("=")
            if name not in widths or not value.isdigit() or int(value) < 1:
                parser.error(f"--max-len {item!r}: expected FIELD=N with FIELD one of {FIELDS} and N >= 1")
            widths[name] = int(value)
    out = os.path.abspath(args.out)
    try:
        if args.paddlerec:
            install_paddlerec(args, out)
        else:
            preprocess_raw(args, out, widths)
    except (RawDataError, ArtifactError) as error:
        print(f"preprocess.py: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}/train_data, {out}/test_data (each with its manifest.json), {out}/meta.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert raw Criteo Kaggle data into PaddleRec's Criteo "slot format".

Input (one of):
  * Kaggle ``train.txt``: tab separated, no header, ``label I1..I13 C1..C26``;
    empty fields are missing values.
  * The DeepCTR / torch-rechub CSV variant: comma separated with the header
    ``label,I1,...,I13,C1,...,C26`` (``--csv-header`` or detected from line 1).
  * A folder holding ``train.txt`` or the Kaggle tarball ``dac.tar.gz`` (then
    ``train.txt`` is extracted next to it first).

Output, one sample per line, 40 space separated fields in this order::

    click:<0|1> dense_feature:<f1> ... dense_feature:<f13> 1:<id> ... 26:<id>

written to ``<out>/<train-name>/part-00000.txt, ...`` and
``<out>/<test-name>/part-...`` with at most ``--lines-per-file`` lines each.

Dense features (as PaddleRec's Criteo preprocessing): missing -> 0, clip to
[min, cap] (caps are the 95th percentiles), then scale to (x - min) / (cap - min).
Categorical features: id = stable hash of the string ``C<k>=<value>`` modulo
``--hash-buckets``; a missing value is the empty string, so "missing" is one
more feature value of its field. The hash is pandas' ``hash_array`` (SipHash
with a fixed key), identical across processes, runs and machines.

The train/test split draws each row by a seeded counter-based hash of its global
row index, so it does not depend on chunking and reruns give identical bytes.

The file is read in blocks of whole lines (``--block-mb``); each block is
checked for its field count with numpy (pandas would silently pad short rows)
and parsed with ``pandas.read_csv``; the whole pipeline is vectorised per block,
so an 11 GB file never has to fit in memory.

Each split folder is an artifact (models/common/artifacts.py): written into a
hidden staging folder beside it and renamed into place at the end with a
``manifest.json`` (its part files with bytes and rows; ``fingerprints.id_space``,
equal for the two folders of one run: a digest of the hash scheme,
``--hash-buckets``, the dense normalisation, the split and the raw bytes read), so
a crash never leaves half output under the final names. A folder that already
holds files is refused (exit 2) unless ``--replace`` is given; one run at a time
writes into ``--out``, and the leftovers of a killed run are removed.
"""
import argparse
import csv
import functools
import gzip
import hashlib
import io
import os
import shutil
import sys
import tarfile
import time

import numpy as np
import pandas as pd
from pandas.util import hash_array

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from models.common.artifacts import ArtifactError, fingerprint, run_outputs  # noqa: E402
from models.common.datasets.criteo import DENSE, LABEL, NUM_DENSE, NUM_SPARSE, SPARSE  # noqa: E402  (the format the readers read)

DENSE_COLS = ["I%d" % i for i in range(1, NUM_DENSE + 1)]
SPARSE_COLS = ["C%d" % i for i in range(1, NUM_SPARSE + 1)]
COLUMNS = ["label"] + DENSE_COLS + SPARSE_COLS
NUM_FIELDS = len(COLUMNS)  # 40

# PaddleRec's Criteo normalisation: lower bounds and 95th-percentile caps.
DENSE_MIN = np.array([0, -3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.int64)
DENSE_CAP = np.array([20, 600, 100, 50, 64000, 500, 100, 50, 500, 10, 10, 10, 50],
                     dtype=np.int64)

TARBALL_NAMES = (
    "dac.tar.gz",
    "criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz",
)


class InputError(Exception):
    """Bad raw input; the message names the file and, where known, the line."""


# ----------------------------------------------------------------------------
# locating and recognising the raw input
# ----------------------------------------------------------------------------
def extract_train_txt(tar_path, dest_dir):
    """Extract the member ``train.txt`` of a Criteo tarball into dest_dir.

    The archive is read to its end so that gzip checks its CRC and length; the
    file appears under its final name only if the whole archive was intact.
    """
    dest = os.path.join(dest_dir, "train.txt")
    tmp = dest + ".partial"
    print("extracting train.txt from %s ..." % tar_path, file=sys.stderr, flush=True)
    opener = gzip.open if tar_path.endswith(("gz", ".tgz")) else open
    found = False
    try:
        with opener(tar_path, "rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if (not found and member.isfile()
                            and os.path.basename(member.name) == "train.txt"):
                        with open(tmp, "wb") as out:
                            shutil.copyfileobj(tar.extractfile(member), out, 16 << 20)
                        found = True
            while stream.read(16 << 20):  # drain: gzip verifies CRC at the end
                pass
    except (OSError, EOFError, tarfile.TarError) as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise InputError("%s: damaged or incomplete archive (%s)" % (tar_path, err))
    if not found:
        raise InputError("%s: no train.txt inside the tarball" % tar_path)
    os.replace(tmp, dest)
    return dest


def resolve_raw(raw):
    """Return the path of the raw text file for a file or folder argument."""
    if os.path.isdir(raw):
        txt = os.path.join(raw, "train.txt")
        if os.path.isfile(txt):
            return txt
        for name in TARBALL_NAMES:
            tar_path = os.path.join(raw, name)
            if os.path.isfile(tar_path):
                return extract_train_txt(tar_path, raw)
        raise InputError("%s: folder holds neither train.txt nor %s"
                         % (raw, " / ".join(TARBALL_NAMES)))
    if not os.path.isfile(raw):
        raise InputError("%s: no such file or folder" % raw)
    if raw.endswith((".tar.gz", ".tgz", ".tar")):
        return extract_train_txt(raw, os.path.dirname(os.path.abspath(raw)))
    return raw


def detect_format(path, force_csv_header):
    """Look at line 1: return (separator, column names or None if no header)."""
    with open(path, "rb") as f:
        first = f.readline().rstrip(b"\r\n").decode("utf-8", "replace")
    if not first:
        raise InputError("%s: line 1: file is empty or starts with an empty line" % path)
    has_header = force_csv_header or first.split("\t")[0].split(",")[0].strip() == "label"
    if has_header:
        sep = "\t" if ("\t" in first and "," not in first) else ","
        names = [n.strip() for n in first.split(sep)]
        if sorted(names) != sorted(COLUMNS):
            raise InputError(
                "%s: line 1: header must name label, I1..I13, C1..C26 (got %d columns: %s)"
                % (path, len(names), ",".join(names[:6]) + (",..." if len(names) > 6 else "")))
        return sep, names
    sep = "\t" if ("\t" in first or "," not in first) else ","
    return sep, None


# ----------------------------------------------------------------------------
# per-block transformation
# ----------------------------------------------------------------------------
def iter_line_blocks(f, block_bytes):
    """Yield byte blocks of whole lines (each ends with a newline)."""
    rest = b""
    while True:
        data = f.read(block_bytes)
        if not data:
            if rest:
                yield rest + b"\n"
            return
        if rest:
            data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        yield data[:cut + 1]
        rest = data[cut + 1:]


def check_field_counts(block, sep, path, first_line):
    """Count separators per line with numpy; return the number of lines."""
    arr = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    seps_up_to = np.cumsum(arr == ord(sep), dtype=np.int32)[newlines]  # blocks are < 2 GiB
    fields = np.diff(seps_up_to, prepend=0) + 1
    bad = np.flatnonzero(fields != NUM_FIELDS)
    if bad.size:
        i = int(bad[0])
        start = int(newlines[i - 1]) + 1 if i > 0 else 0
        empty = int(newlines[i]) - start <= (1 if block[start:start + 1] == b"\r" else 0)
        raise InputError("%s: line %d: expected %d %s-separated fields, found %d%s"
                         % (path, first_line + i, NUM_FIELDS, "tab" if sep == "\t" else "comma",
                            int(fields[i]), " (empty line)" if empty else ""))
    return len(newlines)


def parse_block(block, sep, names, path, first_line):
    numeric = ["label"] + DENSE_COLS
    dtypes = {c: (np.float64 if c in numeric else object) for c in names}
    kwargs = dict(sep=sep, header=None, names=names, index_col=False,
                  keep_default_na=False, quoting=csv.QUOTE_NONE,
                  skip_blank_lines=False, engine="c")
    try:
        df = pd.read_csv(io.BytesIO(block), dtype=dtypes,
                         na_values={c: [""] for c in numeric}, **kwargs)
    except (ValueError, pd.errors.ParserError) as err:
        # Slow path, only to name the offending line and column.
        raw = pd.read_csv(io.BytesIO(block), dtype=object, **kwargs)
        for col in numeric:
            values = raw[col]
            as_num = pd.to_numeric(values, errors="coerce")
            bad = np.flatnonzero(as_num.isna().to_numpy() & (values != "").to_numpy())
            if bad.size:
                i = int(bad[0])
                raise InputError("%s: line %d: column %s is not a number: %r"
                                 % (path, first_line + i, col, values.iloc[i]))
        raise InputError("%s: lines %d..: cannot parse: %s" % (path, first_line, err))
    return df


def validate_numbers(df, path, first_line):
    label = df["label"].to_numpy()
    bad = np.flatnonzero(~((label == 0) | (label == 1)))
    if bad.size:
        i = int(bad[0])
        shown = "missing" if np.isnan(label[i]) else "%g" % label[i]
        raise InputError("%s: line %d: label must be 0 or 1, got %s" % (path, first_line + i, shown))
    dense = df[DENSE_COLS].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad_mask = ~np.isnan(dense) & ~(np.isfinite(dense) & (dense == np.floor(dense)))
    if bad_mask.any():
        i, j = np.argwhere(bad_mask)[0]
        raise InputError("%s: line %d: column %s must be an integer, got %g"
                         % (path, first_line + int(i), DENSE_COLS[j], dense[i, j]))
    return label.astype(np.int64), dense


@functools.lru_cache(maxsize=None)
def dense_token_tables():
    """For each dense feature, the output token of every integer in [min, cap] (made once)."""
    tables = []
    for lo, hi in zip(DENSE_MIN.tolist(), DENSE_CAP.tolist()):
        span = float(hi - lo)
        tables.append(np.array([f"{DENSE}:%.6g" % ((x - lo) / span)
                                for x in range(lo, hi + 1)], dtype=object))
    return tables


def normalise_dense(dense):
    """Missing -> 0, clip to [min, cap]; return integer offsets x - min."""
    filled = np.where(np.isnan(dense), 0.0, dense)
    clipped = np.clip(filled, DENSE_MIN, DENSE_CAP).astype(np.int64)
    return clipped - DENSE_MIN


def hash_sparse(df, buckets):
    """(n, 26) int64 ids: hash of 'C<k>=<value>' modulo buckets."""
    ids = np.empty((len(df), NUM_SPARSE), dtype=np.int64)
    for k, col in enumerate(SPARSE_COLS):
        codes, uniques = pd.factorize(df[col].to_numpy(dtype=object))
        keys = ("%s=" % col) + np.asarray(uniques, dtype=object)
        hashes = hash_array(np.asarray(keys, dtype=object), categorize=False)
        ids[:, k] = (hashes % np.uint64(buckets)).astype(np.int64)[codes]
    return ids


def draw_test_rows(row_index, seed, fraction):
    """Deterministic per-row draw: splitmix64 of (seed, global row index)."""
    if fraction <= 0.0:
        return np.zeros(len(row_index), dtype=bool)
    if fraction >= 1.0:
        return np.ones(len(row_index), dtype=bool)
    offset = (0x9E3779B97F4A7C15 * (seed + 1)) % (1 << 64)  # Python ints: no overflow
    z = row_index.astype(np.uint64) + np.uint64(offset)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return u < fraction


LINE_FORMAT = " ".join(["%s"] * (1 + NUM_DENSE) + [f"{name}:%d" for name in SPARSE])


def format_lines(label, dense_idx, ids, tables, rows):
    """Slot-format lines for the selected rows (bool mask or index array)."""
    columns = [np.where(label[rows] == 1, f"{LABEL}:1", f"{LABEL}:0").tolist()]
    sel = dense_idx[rows]
    for k in range(NUM_DENSE):
        columns.append(tables[k][sel[:, k]].tolist())
    sel_ids = ids[rows]
    for k in range(NUM_SPARSE):
        columns.append(sel_ids[:, k].tolist())
    return [LINE_FORMAT % t for t in zip(*columns)]


# ----------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------
class PartWriter:
    """Writes part-00000.txt, part-00001.txt, ... each with <= limit lines into
    ``folder`` (a split's staging folder: nothing in it is read before the whole
    folder is renamed into place); ``rows`` maps each file name to its lines."""

    def __init__(self, folder, lines_per_file):
        self.folder = folder
        self.limit = lines_per_file
        self.rows = {}
        self.positives = 0
        self._fh = None
        self._name = None

    def _open(self):
        self._name = "part-%05d.txt" % len(self.rows)
        self.rows[self._name] = 0
        self._fh = open(os.path.join(self.folder, self._name), "w", encoding="ascii", newline="\n")

    def _finish(self):
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None

    def write(self, lines, positives):
        self.positives += positives
        start = 0
        while start < len(lines):
            if self._fh is None:
                self._open()
            take = min(len(lines) - start, self.limit - self.rows[self._name])
            self._fh.write("\n".join(lines[start:start + take]))
            self._fh.write("\n")
            self.rows[self._name] += take
            start += take
            if self.rows[self._name] >= self.limit:
                self._finish()

    def close(self, complete=True):
        if self._fh is not None:
            if complete:
                self._finish()
            else:
                self._fh.close()
                self._fh = None


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------
def convert(args, path, writers, t0):
    """Stream the raw file into the split writers; return (rows, SHA-256 of the raw
    bytes read: the header and the rows used, each line ending with a newline)."""
    sep, header = detect_format(path, args.csv_header)
    names = header if header else COLUMNS
    first_line = 2 if header else 1
    digest = hashlib.sha256()
    tables = dense_token_tables()
    rows_done = 0
    next_report = 5_000_000
    with open(path, "rb") as f:
        if header:
            digest.update(f.readline())
        for block in iter_line_blocks(f, int(args.block_mb * (1 << 20))):
            if args.max_rows is not None and rows_done >= args.max_rows:
                break
            n = check_field_counts(block, sep, path, first_line)
            df = parse_block(block, sep, names, path, first_line)
            if len(df) != n:
                raise InputError("%s: lines %d..%d: parsed %d rows from %d lines"
                                 % (path, first_line, first_line + n - 1, len(df), n))
            if args.max_rows is not None and rows_done + n > args.max_rows:
                n = args.max_rows - rows_done
                df = df.iloc[:n]
                block = block[:int(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)[n - 1]) + 1]
            digest.update(block)
            label, dense = validate_numbers(df, path, first_line)
            dense_idx = normalise_dense(dense)
            ids = hash_sparse(df, args.hash_buckets)
            is_test = draw_test_rows(np.arange(rows_done, rows_done + n, dtype=np.uint64),
                                     args.seed, args.test_fraction)
            for split, rows in (("train", ~is_test), ("test", is_test)):
                if rows.any():
                    lines = format_lines(label, dense_idx, ids, tables, rows)
                    writers[split].write(lines, int(label[rows].sum()))
            rows_done += n
            first_line += n
            if rows_done >= next_report:
                print("  %d rows, %.0f s" % (rows_done, time.time() - t0),
                      file=sys.stderr, flush=True)
                next_report += 5_000_000
    return rows_done, digest.hexdigest()


def encoding(args, raw_sha256):
    """What decides the ids and the rows of each split; its fingerprint is the id space."""
    return {"format": "PaddleRec criteo slot format",
            "sparse": "pandas.util.hash_array (SipHash, fixed key) of 'C<k>=<value>' % hash_buckets",
            "hash_buckets": args.hash_buckets,
            "dense": {"min": DENSE_MIN.tolist(), "cap": DENSE_CAP.tolist(), "value": "(x - min) / (cap - min), %.6g"},
            "split": {"draw": "splitmix64(seed, row index) < test_fraction", "seed": args.seed,
                      "test_fraction": args.test_fraction},
            "raw_sha256": raw_sha256}


def preprocess(args):
    t0 = time.time()
    out = os.path.abspath(args.out)
    names = {"train": args.train_name, "test": args.test_name}
    specs = {name: {"kind": f"criteo {split} split (PaddleRec slot format)", "split": split}
             for split, name in names.items()}
    with run_outputs(out, specs, replace=args.replace, data_set="criteo") as arts:
        folders = {split: arts[name] for split, name in names.items()}
        path = resolve_raw(args.raw)
        writers = {split: PartWriter(art.path, args.lines_per_file) for split, art in folders.items()}
        try:
            rows_done, raw_sha256 = convert(args, path, writers, t0)
        except BaseException:
            for w in writers.values():
                w.close(complete=False)
            raise
        about = encoding(args, raw_sha256)
        id_space = fingerprint(about)
        for split, art in folders.items():
            writers[split].close()
            art.rows.update(writers[split].rows)
            art.fingerprints["id_space"] = id_space
            art.about["encoding"] = about

    seconds = time.time() - t0
    for split, name in names.items():
        w = writers[split]
        print("%s: %d rows (%d positives) in %d file(s) -> %s"
              % (split, sum(w.rows.values()), w.positives, len(w.rows), os.path.join(out, name)))
    print("id space %s; done: %d rows from %s in %.1f s" % (id_space, rows_done, path, seconds))
    return {s: (sum(w.rows.values()), w.positives, len(w.rows)) for s, w in writers.items()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Criteo Kaggle raw data -> PaddleRec slot format (train/test part files).")
    p.add_argument("--raw", required=True,
                   help="train.txt (or CSV with header), or a folder with train.txt or dac.tar.gz")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train-name", default="train_data", help="train sub-folder name")
    p.add_argument("--test-name", default="test_data", help="test sub-folder name")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of rows drawn into the test split (default 0.1)")
    p.add_argument("--seed", type=int, default=2021, help="seed of the split draw")
    p.add_argument("--lines-per-file", type=int, default=1_000_000,
                   help="maximum lines per part file")
    p.add_argument("--hash-buckets", type=int, default=1000001,
                   help="categorical ids are hash %% this (PaddleRec sparse_feature_number)")
    p.add_argument("--csv-header", action="store_true",
                   help="input is comma separated with header label,I1..I13,C1..C26 "
                        "(auto-detected when line 1 starts with 'label')")
    p.add_argument("--block-mb", type=float, default=32.0,
                   help="bytes read and processed per step, in MiB")
    p.add_argument("--max-rows", type=int, default=None,
                   help="stop after this many rows (quick trials)")
    p.add_argument("--replace", action="store_true",
                   help="replace the split folders of an earlier run (without it, a split "
                        "folder that holds files is refused)")
    args = p.parse_args(argv)
    if not 0.0 <= args.test_fraction <= 1.0:
        p.error("--test-fraction must be in [0, 1]")
    if not 0.0 < args.block_mb <= 1024.0:
        p.error("--block-mb must be in (0, 1024]")
    if args.lines_per_file < 1:
        p.error("--lines-per-file must be >= 1")
    if args.hash_buckets < 1:
        p.error("--hash-buckets must be >= 1")
    if args.seed < 0:
        p.error("--seed must be >= 0")
    if args.train_name == args.test_name:
        p.error("--train-name and --test-name must differ")
    for name in (args.train_name, args.test_name):
        if not name or os.sep in name or name.startswith("."):
            p.error("split folder names must be plain names, got %r" % name)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        preprocess(args)
    except (InputError, ArtifactError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

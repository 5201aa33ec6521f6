"""The columnar cache: each source file converted once (parsed, checked against the schema, in
bounded memory) into two memory-mapped row-major blocks, written with an atomic rename; and the
listing of a data folder's files."""
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from models.common.artifacts import manifest_files, read_manifest
from models.common.data.parsers import DataFormatError

CACHE_FORMAT = 2  # bump when the cache layout changes: old caches are rebuilt
DEFAULT_CACHE_DIR = ".rec_cache"  # beside the data files, hidden from list_data_files


TEMPORARY_SUFFIXES = (".tmp", ".partial", ".part", ".swp", "~")  # what a killed or running writer leaves


def list_data_files(path, config_key):
    """The data files of the folder ``path``, sorted: the files its manifest lists (checked: present,
    unchanged, nothing else in the folder), or - a folder without one - its files but hidden ones.
    A temporary file (a writer killed half-way leaves ``train.txt.tmp`` beside ``train.txt``), a
    subfolder or a special file is an error naming it: it would be read, or silently not."""
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"{config_key}: data directory {path!r} does not exist")
    manifest = read_manifest(path)
    if manifest is not None:
        files = manifest_files(path, manifest, config_key)
    else:
        files = []
        for name in sorted(n for n in os.listdir(path) if not n.startswith(".")):
            full = os.path.join(path, name)
            if name.endswith(TEMPORARY_SUFFIXES):
                raise DataFormatError(f"{config_key}: {full} is a temporary file (a writer was stopped half-way, or "
                                      f"is still running): write the data again, or remove it")
            if not os.path.isfile(full):
                raise DataFormatError(f"{config_key}: {full} is {'a folder' if os.path.isdir(full) else 'no regular file'}; "
                                      f"a data folder holds data files only")
            files.append(full)
    if not files:
        raise FileNotFoundError(f"{config_key}: data directory {path!r} contains no files")
    return files



def _npy_header(dtype, shape):
    """A version-1.0 .npy header padded to 128 bytes, so it can be rewritten in place."""
    header = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                   "shape": tuple(shape)})
    length = 128 - 10
    return b"\x93NUMPY\x01\x00" + np.uint16(length).tobytes() + header.encode().ljust(length - 1) + b"\n"


class _BlockWriter:
    """Appends row blocks to ``<folder>/<name>.npy`` and fixes the header's row count at the end."""

    def __init__(self, path, dtype, width):
        self.path, self.dtype, self.width, self.rows = path, np.dtype(dtype), width, 0
        self.file = open(path, "wb")
        self.file.write(_npy_header(self.dtype, (0, width)))

    def append(self, block):
        np.ascontiguousarray(block, dtype=self.dtype).tofile(self.file)
        self.rows += len(block)

    def close(self):
        self.file.seek(0)
        self.file.write(_npy_header(self.dtype, (self.rows, self.width)))
        self.file.close()


def _expected_size(rows, width, dtype):
    return 128 + rows * width * np.dtype(dtype).itemsize


class ColumnarCache:
    """The cache of one source file: ``<cache_dir>/<file name>-<key>/{int,float}.npy`` plus
    ``meta.json``. The key hashes the file's path, size and modification time, the schema and the
    parser, so any change to them means another folder (rebuilt; the stale one is removed)."""

    def __init__(self, source, schema, parser, cache_dir, skip_bad_lines=False):
        self.source, self.schema, self.parser = os.path.abspath(source), schema, parser
        self.skip_bad_lines = skip_bad_lines
        self.cache_dir = cache_dir
        stat = os.stat(self.source)
        identity = json.dumps({"format": CACHE_FORMAT, "source": self.source, "size": stat.st_size,
                               "mtime_ns": stat.st_mtime_ns, "schema": schema.signature(),
                               "parser": parser.signature, "skip_bad_lines": skip_bad_lines}, sort_keys=True)
        self.key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.stem = os.path.basename(self.source)
        self.folder = os.path.join(cache_dir, f"{self.stem}-{self.key}")

    def open(self):
        """{'int': memmap, 'float': memmap}, meta; or None if the cache is missing or damaged."""
        try:
            with open(os.path.join(self.folder, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
            if meta.get("key") != self.key:
                return None
            blocks = {}
            for name, dtype in self.schema.block_dtypes().items():
                path = os.path.join(self.folder, f"{name}.npy")
                width = self.schema.widths[name]
                if os.path.getsize(path) != _expected_size(meta["rows"], width, dtype):
                    return None
                block = np.load(path, mmap_mode="r") if meta["rows"] else np.zeros((0, width), dtype)
                if block.shape != (meta["rows"], width) or block.dtype != dtype:
                    return None
                blocks[name] = block
            return blocks, meta
        except (OSError, ValueError, KeyError):
            return None

    def build(self, progress):
        """Convert the source file into a staging folder, then rename it into place."""
        staging = tempfile.mkdtemp(dir=self.cache_dir, prefix=f".tmp-{self.stem}-")
        try:
            writers = {name: _BlockWriter(os.path.join(staging, f"{name}.npy"), dtype, self.schema.widths[name])
                       for name, dtype in self.schema.block_dtypes().items()}
            skipped, total, names = 0, os.path.getsize(self.source), {}
            for chunk in self.parser.read(self.source, self.schema, self.skip_bad_lines):
                names = names or chunk.names
                unit = chunk.unit
                blocks, bad = self.schema.pack(
                    chunk.columns, lambda i, c=chunk, u=unit: f"{self.source}, {u} {c.numbers[i]}")
                skipped += chunk.skipped
                if bad is not None:
                    mask, message = bad
                    if not self.skip_bad_lines:
                        raise DataFormatError(message)
                    skipped += int(mask.sum())
                    blocks = {k: v[~mask] for k, v in blocks.items()}
                for name, writer in writers.items():
                    writer.append(blocks[name])
                progress(self.source, writers["int"].rows, total, chunk)
            for writer in writers.values():
                writer.close()
            meta = {"key": self.key, "source": self.source, "rows": writers["int"].rows, "skipped": skipped,
                    "schema": json.loads(self.schema.signature()), "parser": self.parser.signature,
                    "column_names": names}
            with open(os.path.join(staging, "meta.json"), "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=1)
            if os.path.isdir(self.folder):
                shutil.rmtree(self.folder)
            os.replace(staging, self.folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._remove_stale()

    def _remove_stale(self):
        """Other caches of the same file name (older versions of it, other schemas)."""
        prefix = f"{self.stem}-"
        for name in os.listdir(self.cache_dir):
            path = os.path.join(self.cache_dir, name)
            if (name.startswith(prefix) and len(name) == len(prefix) + 16 and path != self.folder
                    and os.path.isfile(os.path.join(path, "meta.json"))):
                with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
                    try:
                        same_source = json.load(f).get("source") == self.source
                    except ValueError:
                        same_source = True
                if same_source:
                    shutil.rmtree(path, ignore_errors=True)

    def open_or_build(self, progress, say):
        """Open the cache, building it (once, under a lock shared by concurrent processes) if needed.
        The lock is on the cache folder itself, so that no lock file is left behind."""
        opened = self.open()
        if opened is not None:
            return opened
        folder = os.open(self.cache_dir, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)  # another rank may be building it: wait, then reuse
            opened = self.open()
            if opened is None:
                # Half-written staging folders of a killed conversion of this file: never used, removed.
                for name in os.listdir(self.cache_dir):
                    if name.startswith(f".tmp-{self.stem}-"):
                        shutil.rmtree(os.path.join(self.cache_dir, name), ignore_errors=True)
                say(f"converting {self.source} into the columnar cache {self.folder}")
                self.build(progress)
                opened = self.open()
                if opened is None:
                    raise OSError(f"the cache {self.folder} could not be read back after writing it")
        finally:
            os.close(folder)  # releases the lock
        return opened


class _Progress:
    """Logs conversion progress (rows, rows/s, ETA) at most every ``interval`` seconds."""

    def __init__(self, say, interval=10.0):
        self.say, self.interval = say, interval
        self.started = self.last = time.perf_counter()

    def start(self):
        self.started = self.last = time.perf_counter()

    def __call__(self, source, rows, total_bytes, chunk):
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        done = getattr(chunk, "bytes_done", None)
        rate = rows / max(now - self.started, 1e-9)
        eta = ""
        if done:
            eta = f", ETA {(now - self.started) * (total_bytes - done) / max(done, 1):.0f} s"
        self.say(f"  {os.path.basename(source)}: {rows} rows, {rate:.0f} rows/s{eta}")


def _say(message):
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)


def cache_folder_for(file_list, config):
    """runner.data_cache_dir, or a hidden folder beside the (first) data file; checked writable."""
    configured = config.get("runner.data_cache_dir") if config is not None else None
    folder = configured or os.path.join(os.path.dirname(os.path.abspath(file_list[0])), DEFAULT_CACHE_DIR)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        hint = "" if configured else " (the default, beside the data; set runner.data_cache_dir to a writable folder)"
        raise PermissionError(f"runner.data_cache_dir: cannot write the data cache to {folder!r} "
                              f"({error.strerror}){hint}") from None
    return folder

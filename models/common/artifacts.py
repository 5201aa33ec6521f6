"""What runs hand to each other - data folders, side files, checkpoints, exports, evaluation outputs -
written so that a reader can tell what it is, and never sees half of it.

- ``write_atomic`` / ``write_json``: one file, written under a temporary name beside the target and
  renamed into place when complete: a crash leaves the old file or the whole new one.
- ``Artifact``: a folder, written into a hidden staging folder beside its destination and renamed
  into place with a ``manifest.json`` (what made it, with which command, its files with their
  bytes and rows, and fingerprints - e.g. of the id space its files share with the other folders
  of the same run). A destination that already holds files is refused unless replacing is asked
  for, so two runs' outputs never mix.
- ``read_manifest`` / ``manifest_files``: a consumer reads the files the manifest lists, checked
  (present, same size), and nothing else of the folder.
- ``FolderLock``: one writer per folder (two trainings into one ``model_save_path`` would
  otherwise both report success); a lock whose holder died is taken over.
- ``fingerprint`` / ``file_fingerprint``: short digests of values and of side files.
"""
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import zipfile

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "rec-artifact/1"
LOCK = ".lock"


class ArtifactError(ValueError):
    """An artifact folder that is not what a run may read or write; the message names it."""


# ---- files --------------------------------------------------------------------------------------
def write_atomic(path, write):
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            write(f)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private; the result is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def save_npz(path, arrays, compress=False):
    """``np.savez`` (``compress``: ``np.savez_compressed``) with a fixed timestamp in the zip
    entries: the same arrays give the same bytes, so that a rerun can be compared byte for byte."""
    import numpy as np

    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=compression, allowZip64=True) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type, entry.external_attr = compression, 0o644 << 16
            with archive.open(entry, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


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


def fingerprint(value):
    """A short digest of a JSON-able value (a schema, a vocabulary, an id space)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sha256_file(path):
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path):
    """A short digest of a file's bytes (a side file: dataset.json, meta.json, a vectors file)."""
    return sha256_file(path)[:16]


# ---- folders ------------------------------------------------------------------------------------
def holds_files(folder):
    """Whether ``folder`` exists and holds anything but hidden entries."""
    return os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder))


class Artifact:
    """Writes the folder ``destination`` as a whole (see the module docstring)::

        with Artifact(out, "census train rows", replace=args.replace) as art:
            write_csv(os.path.join(art.path, "census_train.csv"), ...)
            art.rows["census_train.csv"] = 1513
            art.fingerprints["id_space"] = fingerprint(feature_names)

    ``path`` is the staging folder; leaving the block without an error writes the manifest and
    renames the staging folder into place (an earlier folder is replaced only with ``replace``);
    an error removes the staging folder and leaves the destination as it was.
    """

    def __init__(self, destination, kind, replace=False, replace_hint="--replace", **about):
        self.destination = os.path.abspath(destination)
        self.kind, self.replace, self.replace_hint, self.about = kind, replace, replace_hint, about
        self.rows, self.fingerprints = {}, {}
        self.path = None

    def __enter__(self):
        if holds_files(self.destination) and not self.replace:
            raise ArtifactError(f"{self.destination} already holds files ({describe(self.destination)}); "
                                f"choose another folder, or {self.replace_hint} to replace them")
        if os.path.lexists(self.destination) and not os.path.isdir(self.destination):
            raise ArtifactError(f"{self.destination} exists and is not a folder")
        parent, name = os.path.split(self.destination)
        os.makedirs(parent, exist_ok=True)
        self.path = tempfile.mkdtemp(dir=parent, prefix=f".{name}.staging-")
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        try:
            write_manifest(self.path, self.kind, self.rows, self.fingerprints, **self.about)
            publish(self.path, self.destination)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        return False


def write_manifest(folder, kind, rows=None, fingerprints=None, **about):
    """Write ``folder/manifest.json``: ``kind`` (what the folder holds), every file under it (but
    hidden ones) with its bytes and - from ``rows`` {relative path: n} - rows, the
    ``fingerprints`` (e.g. ``id_space``: equal for every folder and side file of one preprocessing
    run), the command that made it and when; ``about``: anything else worth saying."""
    rows, files = rows or {}, {}
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".") and n != MANIFEST):
            relative = os.path.relpath(os.path.join(root, name), folder)
            files[relative] = {"bytes": os.path.getsize(os.path.join(root, name))}
            if relative in rows:
                files[relative]["rows"] = int(rows[relative])
    write_json(os.path.join(folder, MANIFEST), {
        "format": MANIFEST_FORMAT, "kind": kind, "files": files, "fingerprints": fingerprints or {},
        "command": [os.path.basename(sys.argv[0])] + sys.argv[1:], "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **about})


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(staging, destination):
    """Rename the finished folder ``staging`` to ``destination``, replacing what was there: the
    old folder is moved aside first and removed last, so the destination is never half old, half new.
    The staging folder (mkdtemp: private) gets the modes a plain mkdir would give."""
    os.chmod(staging, 0o777 & ~_umask())
    old = None
    if os.path.isdir(destination):
        old = tempfile.mkdtemp(dir=os.path.dirname(destination), prefix=f".{os.path.basename(destination)}.old-")
        os.rmdir(old)
        os.replace(destination, old)
    os.replace(staging, destination)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def describe(folder, most=3):
    names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def read_manifest(folder):
    """The manifest of an artifact folder, or None when it has none; a damaged one is an error."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
            raise ValueError("not a manifest of this format")
    except ValueError as error:
        raise ArtifactError(f"{path}: unreadable manifest ({error})") from None
    return manifest


def manifest_files(folder, manifest, config_key, others_allowed=False):
    """The files ``manifest`` lists, checked: each is there with its recorded size, and - unless
    ``others_allowed`` (a reader that opens files by name) - the folder holds no other file (a
    data folder's reader would read a leftover or a foreign file, or silently not)."""
    listed = manifest["files"]
    for name, info in listed.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ArtifactError(f"{config_key}: {path} is listed in {os.path.join(folder, MANIFEST)} but missing")
        if os.path.getsize(path) != info.get("bytes"):
            raise ArtifactError(f"{config_key}: {path} has {os.path.getsize(path)} bytes, its manifest says "
                                f"{info.get('bytes')}: changed since it was written")
    others = sorted(n for n in os.listdir(folder) if not n.startswith(".") and n != MANIFEST and n not in listed
                    and not any(k.startswith(n + "/") for k in listed))
    if others and not others_allowed:
        raise ArtifactError(f"{config_key}: {folder} holds {others[0]}, which its manifest does not list "
                            f"(written by {manifest.get('kind', '?')}); remove it or write the folder again")
    return sorted(os.path.join(folder, name) for name in listed if name != MANIFEST)


# ---- one writer per folder ------------------------------------------------------------------------
@contextlib.contextmanager
def writing_into(out, names, option="--out"):
    """Hold the folder ``out`` while a pipeline writes its outputs ``names`` (folders or files)
    there: a lock on the folder itself (no file is made in it; the kernel drops it when the
    process ends, killed or not), so a second run into ``out`` stops at once instead of mixing its
    outputs with this run's; then what a killed run left of those outputs is removed (hidden
    ``.<name>.staging-*`` / ``.<name>.old-*`` folders and ``.<name>.*`` temporary files). On a file
    system without locks (some network ones) neither happens."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ArtifactError(f"{option} {out} is not a folder")
    os.makedirs(out, exist_ok=True)
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            raise ArtifactError(f"{out} is being written by another run; wait for it, or choose another "
                                f"{option}") from None
        except OSError:
            locked = False
        for entry in os.listdir(out) if locked else ():
            if any(entry.startswith(f".{name}.") for name in names):
                leftover = os.path.join(out, entry)
                if os.path.isdir(leftover) and not os.path.islink(leftover):
                    shutil.rmtree(leftover)
                else:
                    os.remove(leftover)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def sole_artifact(destination, kind, option="--out", **settings):
    """``Artifact(destination, kind, **settings)`` written while holding the folder around it
    (``writing_into``): one writer at a time, and what a killed earlier writer left beside it (its
    staging folder) is removed first. ``option``: what the user sets the destination with."""
    parent, name = os.path.split(os.path.abspath(destination))
    with writing_into(parent, [name], option), Artifact(destination, kind, **settings) as art:
        yield art


@contextlib.contextmanager
def run_outputs(out, folders, side_files=(), replace=False, leftovers=(), **about):
    """The output folders of one pipeline run in ``out`` - ``folders`` {name: {"kind": ..., more
    manifest fields}} - as Artifacts {name: Artifact}, entered before any work, while holding
    ``out`` (``writing_into``; ``leftovers``: names of other hidden work folders a killed run may
    have left). A non-empty folder or an earlier run's side file (``side_files``: names in ``out``)
    is refused unless ``replace``. On success the earlier side files are removed, then the folders
    published; the caller writes its side files last, so that a side file is only ever beside the
    folders of its own run."""
    with writing_into(out, [*folders, *side_files, *leftovers]), contextlib.ExitStack() as stack:
        arts = {name: stack.enter_context(Artifact(os.path.join(out, name), replace=replace, **about, **fields))
                for name, fields in folders.items()}
        earlier = [os.path.join(out, n) for n in side_files if os.path.lexists(os.path.join(out, n))]
        if earlier and not replace:
            raise ArtifactError(f"{earlier[0]} already exists (an earlier run's output); choose another --out, or "
                                f"--replace to replace that run's output")
        yield arts
        for path in earlier:
            os.remove(path)



class FolderLock:
    """An exclusive lock on ``folder`` (the file ``<folder>/.lock``) for as long as the process
    holds it: a second run stops at once naming the folder and the holder. The kernel drops the
    lock when its holder dies, so a lock file left by a killed run is taken over (``taken_over``
    says whose it was). A run that fails leaves no trace of the lock: the folder is removed again
    when the run created it and left nothing in it."""

    def __init__(self, folder, config_key):
        self.folder, self.config_key = folder, config_key
        self.file, self.taken_over, self.created = None, None, False

    def __enter__(self):
        self.created = not os.path.isdir(self.folder)
        try:
            os.makedirs(self.folder, exist_ok=True)
            self.file = open(os.path.join(self.folder, LOCK), "a+", encoding="utf-8")
        except OSError as error:
            raise PermissionError(f"{self.config_key}: cannot write to {self.folder!r} ({error.strerror})") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ArtifactError(f"{self.config_key}: {self.folder} is in use by {holder}; wait for it, or use "
                                f"another folder") from None
        self.file.seek(0)
        self.taken_over = self.file.read().strip() or None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv[:3])}, since "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')})")
        self.file.flush()
        return self

    def __exit__(self, kind, error, traceback):
        self.file.seek(0)
        self.file.truncate()
        if kind is not None and os.listdir(self.folder) == [LOCK]:  # a failed run that wrote nothing
            os.remove(os.path.join(self.folder, LOCK))
            if self.created:
                os.rmdir(self.folder)
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        return False

"""Tests of datasets/criteo/preprocess.py and datasets/criteo/run.sh on hand-made raw files.

The helpers ``contents``, ``folder_state`` and ``killed_runs`` are shared with the census tests."""
import fcntl
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from models.common.artifacts import MANIFEST, read_manifest
from models.common.data.cache import list_data_files

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CRITEO = os.path.join(REPO, "datasets", "criteo")
SCRIPT = os.path.join(CRITEO, "preprocess.py")
RUN_SH = os.path.join(CRITEO, "run.sh")

_spec = importlib.util.spec_from_file_location("criteo_preprocess", SCRIPT)
pp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pp)

KEYS = ["click"] + ["dense_feature"] * 13 + [str(k) for k in range(1, 27)]
BUCKETS = 1000001


def make_rows(n, seed=0):
    """n raw rows: (label, 13 ints or None, 26 hex strings or None)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        ints = [None if rng.random() < 0.2 else int(rng.integers(-3, 2000)) for _ in range(13)]
        cats = [None if rng.random() < 0.15 else "%08x" % int(rng.integers(0, 40))
                for _ in range(26)]
        rows.append((label, ints, cats))
    return rows


def hand_rows():
    """20 rows; the first three have hand-computed expectations."""
    r0 = (1, [10, -3, None, None, 100000] + [None] * 8,
          ["68fd1e64", "68fd1e64", None] + ["abc%05d" % k for k in range(4, 27)])
    r1 = (0, [None, None, 100, 25, 64000, 250, 0, 50, 500, 10, 5, 1, 60],
          ["68fd1e64", "80e26c9b", None] + ["abc%05d" % k for k in range(4, 27)])
    r2 = (0, [-5, 700, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [None] * 26)
    return [r0, r1, r2] + make_rows(17, seed=1)


def tab_text(rows):
    lines = []
    for label, ints, cats in rows:
        fields = [str(label)] + ["" if v is None else str(v) for v in ints] \
            + ["" if c is None else c for c in cats]
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def csv_text(rows):
    header = ",".join(pp.COLUMNS)
    lines = [header]
    for label, ints, cats in rows:  # DeepCTR writes integers as floats ("260.0")
        fields = [str(label)] + ["" if v is None else "%.1f" % v for v in ints] \
            + ["" if c is None else c for c in cats]
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def run(raw, out, *opts):
    """Run preprocess in-process; return its exit code."""
    return pp.main(["--raw", str(raw), "--out", str(out)] + [str(o) for o in opts])


def read_split(folder):
    """The part files of a split folder (those its manifest lists: nothing else is there) and their lines."""
    files = sorted(read_manifest(folder)["files"])
    assert sorted(os.listdir(folder)) == sorted(files + [MANIFEST])
    lines = []
    for name in files:
        with open(os.path.join(folder, name)) as f:
            lines.extend(f.read().splitlines())
    return files, lines


def tree_bytes(root):
    """Every file under root (hidden ones too), as bytes."""
    result = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                result[os.path.relpath(p, root)] = f.read()
    return result


def contents(root):
    """tree_bytes with each manifest.json parsed and its "created" and "command" dropped: what a
    run wrote, whenever and with whatever --out it ran (two runs of one input compare equal)."""
    result = tree_bytes(root)
    for name in result:
        if os.path.basename(name) == MANIFEST:
            result[name] = {k: v for k, v in json.loads(result[name]).items() if k not in ("created", "command")}
    return result


def data_bytes(root):
    """tree_bytes without the manifests."""
    return {k: v for k, v in tree_bytes(root).items() if os.path.basename(k) != MANIFEST}


def manifests(out, *names):
    return [read_manifest(os.path.join(out, name)) for name in names]


@pytest.fixture
def raw_tab(tmp_path):
    return write(tmp_path / "train.txt", tab_text(hand_rows()))


def test_format_and_normalisation(raw_tab, tmp_path):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--test-fraction", 0) == 0
    files, lines = read_split(out / "train_data")
    assert files == ["part-00000.txt"]
    assert os.listdir(out / "test_data") == [MANIFEST] and read_manifest(out / "test_data")["files"] == {}
    assert len(lines) == 20
    parsed = []
    for line in lines:
        fields = line.split(" ")
        assert len(fields) == 40
        assert [f.split(":")[0] for f in fields] == KEYS
        parsed.append([f.split(":")[1] for f in fields])
    r0, r1, r2 = parsed[:3]
    assert r0[0] == "1" and r1[0] == "0"
    dense0 = [float(v) for v in r0[1:14]]
    assert dense0[0] == 0.5          # I1 = 10 -> 10 / 20
    assert dense0[1] == 0.0          # I2 = -3 -> the minimum
    assert dense0[2] == 0.0          # I3 missing -> 0
    assert dense0[4] == 1.0          # I5 above the cap -> 1
    assert r0[2] == "0"              # compact formatting
    assert r1[2] == "%.6g" % (3 / 603)  # I2 missing -> 0 -> (0 + 3) / 603
    dense1 = [float(v) for v in r1[1:14]]
    assert dense1[2] == 1.0 and dense1[3] == 0.5 and dense1[12] == 1.0  # I13 = 60 > cap 50
    dense2 = [float(v) for v in r2[1:14]]
    assert dense2[0] == 0.0 and dense2[1] == 1.0  # I1 = -5 clipped to 0, I2 = 700 to cap
    for row in parsed:
        assert all(0.0 <= float(v) <= 1.0 for v in row[1:14])
        assert all(0 <= int(v) < BUCKETS for v in row[14:])
    ids0, ids1, ids2 = ([int(v) for v in r[14:]] for r in (r0, r1, r2))
    assert ids0[0] == ids1[0]                 # same value, same field -> same id
    assert ids0[0] != ids0[1]                 # same value, other field -> other id
    assert ids0[2] == ids1[2] == ids2[2]      # missing C3 -> one id of its own
    assert len(set(ids2)) == 26               # missing differs per field
    assert ids1[1] != ids0[1]


def test_hash_is_pinned():
    # Guards the id mapping against changes of the hash (e.g. a pandas upgrade):
    # ids of existing preprocessed data would silently stop matching.
    df = pp.pd.DataFrame({c: ["68fd1e64" if c == "C1" else ""] for c in pp.SPARSE_COLS})
    ids = pp.hash_sparse(df, BUCKETS)[0]
    assert ids[0] == 422325
    assert ids[25] == 227971


def test_two_runs_identical_bytes(raw_tab, tmp_path):
    opts = ("--test-fraction", 0.3, "--lines-per-file", 4)
    assert run(raw_tab, tmp_path / "a", *opts) == 0
    assert run(raw_tab, tmp_path / "b", *opts) == 0
    a, b = contents(tmp_path / "a"), contents(tmp_path / "b")
    assert a and a == b
    assert data_bytes(tmp_path / "a") == data_bytes(tmp_path / "b")


def test_block_size_does_not_change_output(raw_tab, tmp_path):
    assert run(raw_tab, tmp_path / "a", "--test-fraction", 0.3) == 0
    assert run(raw_tab, tmp_path / "b", "--test-fraction", 0.3, "--block-mb", 0.001) == 0
    assert contents(tmp_path / "a") == contents(tmp_path / "b")  # the id space too


def test_split_fraction_and_disjoint(tmp_path):
    raw = write(tmp_path / "train.txt", tab_text(make_rows(3000, seed=2)))
    assert run(raw, tmp_path / "all", "--test-fraction", 0) == 0
    assert run(raw, tmp_path / "s", "--test-fraction", 0.25) == 0
    _, everything = read_split(tmp_path / "all" / "train_data")
    _, train = read_split(tmp_path / "s" / "train_data")
    _, test = read_split(tmp_path / "s" / "test_data")
    assert len(train) + len(test) == 3000
    assert 0.21 < len(test) / 3000 < 0.29
    # disjoint and complete: the two splits are an order-preserving partition of all rows
    mask = pp.draw_test_rows(np.arange(3000, dtype=np.uint64), 2021, 0.25)
    assert test == [line for line, t in zip(everything, mask) if t]
    assert train == [line for line, t in zip(everything, mask) if not t]
    # another seed draws other rows
    assert run(raw, tmp_path / "s2", "--test-fraction", 0.25, "--seed", 7) == 0
    _, test2 = read_split(tmp_path / "s2" / "test_data")
    assert test2 != test


def test_lines_per_file(raw_tab, tmp_path):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--test-fraction", 0, "--lines-per-file", 6) == 0
    files, lines = read_split(out / "train_data")
    assert files == ["part-0000%d.txt" % i for i in range(4)]
    sizes = [len(open(out / "train_data" / f).read().splitlines()) for f in files]
    assert sizes == [6, 6, 6, 2]
    assert sorted(os.listdir(out)) == ["test_data", "train_data"]  # no staging, no .tmp


def test_split_folder_names(raw_tab, tmp_path):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--train-name", "slot_train", "--test-name", "slot_test") == 0
    assert sorted(os.listdir(out)) == ["slot_test", "slot_train"]


def test_csv_with_header_matches_tab(tmp_path):
    rows = hand_rows()
    tab = write(tmp_path / "train.txt", tab_text(rows))
    csv = write(tmp_path / "criteo_sample.txt", csv_text(rows))
    assert run(tab, tmp_path / "t", "--test-fraction", 0.3) == 0
    assert run(csv, tmp_path / "c", "--test-fraction", 0.3) == 0          # auto-detected
    assert run(csv, tmp_path / "f", "--test-fraction", 0.3, "--csv-header") == 0
    expected = data_bytes(tmp_path / "t")  # the manifests' id spaces differ: other raw bytes
    assert data_bytes(tmp_path / "c") == expected
    assert data_bytes(tmp_path / "f") == expected
    # a header naming the same columns in another order is honoured
    lines = csv_text(rows).splitlines()
    cols = [line.split(",") for line in lines]
    order = [0] + list(range(14, 40)) + list(range(1, 14))
    write(tmp_path / "perm.csv", "\n".join(",".join(c[i] for i in order) for c in cols) + "\n")
    assert run(tmp_path / "perm.csv", tmp_path / "p", "--test-fraction", 0.3) == 0
    assert data_bytes(tmp_path / "p") == expected


def test_folder_with_tarball(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    text = tab_text(hand_rows())
    write(src / "train.txt", text)
    write(src / "readme.txt", "readme\n")
    raw = tmp_path / "raw"
    raw.mkdir()
    with tarfile.open(raw / "dac.tar.gz", "w:gz") as tar:
        tar.add(src / "readme.txt", arcname="readme.txt")
        tar.add(src / "train.txt", arcname="train.txt")
    assert run(raw, tmp_path / "out", "--test-fraction", 0) == 0
    assert open(raw / "train.txt").read() == text
    _, lines = read_split(tmp_path / "out" / "train_data")
    assert len(lines) == 20


BAD_CASES = [
    ("extra field", lambda f: f + ["x"], "expected 40"),
    ("missing field", lambda f: f[:-1], "found 39"),
    ("label 2", lambda f: ["2"] + f[1:], "label must be 0 or 1"),
    ("missing label", lambda f: [""] + f[1:], "label must be 0 or 1"),
    ("text int", lambda f: f[:3] + ["abc"] + f[4:], "column I3 is not a number"),
    ("fractional int", lambda f: f[:3] + ["3.5"] + f[4:], "column I3 must be an integer"),
    ("empty line", lambda f: [], "empty line"),
]


@pytest.mark.parametrize("name,change,message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_line_names_line(tmp_path, capsys, name, change, message):
    lines = tab_text(hand_rows()).splitlines()
    lines[6] = "\t".join(change(lines[6].split("\t")))
    raw = write(tmp_path / "bad.txt", "\n".join(lines) + "\n")
    assert run(raw, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "bad.txt: line 7:" in err and message in err
    assert not os.path.exists(tmp_path / "out" / "train_data")
    assert os.listdir(tmp_path / "out") == []  # staging removed


def test_bad_line_cli_exit_code_and_csv_line_number(tmp_path):
    lines = csv_text(hand_rows()).splitlines()
    lines[5] = lines[5] + ",extra"  # file line 6 (line 1 is the header)
    raw = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, SCRIPT, "--raw", raw, "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "bad.csv: line 6: expected 40 comma-separated fields, found 41" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_failed_run_keeps_previous_output_and_leftovers_are_removed(raw_tab, tmp_path):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--test-fraction", 0.3) == 0
    good, good_bytes = contents(out), tree_bytes(out)
    # a bad run must not touch the published output
    bad = write(tmp_path / "bad.txt", "1\t2\n")
    assert run(bad, out, "--replace") == 2
    assert tree_bytes(out) == good_bytes
    # leftovers of a killed run (staging and moved-aside folders, a temporary manifest) are
    # removed, and a foreign file in a published folder does not survive --replace
    for leftover in (".train_data.staging-x1y2", ".test_data.old-z3"):
        (out / leftover).mkdir()
        write(out / leftover / "part-00007.txt", "junk\n")
    write(out / "train_data" / ".manifest.json.abc", "{")
    write(out / "train_data" / "part-00009.txt", "old\n")
    with pytest.raises(ValueError, match="part-00009.txt"):
        list_data_files(str(out / "train_data"), "runner.train_data_dir")
    assert run(raw_tab, out, "--test-fraction", 0.3, "--replace") == 0
    assert contents(out) == good
    assert sorted(os.listdir(out)) == ["test_data", "train_data"]


# ----------------------------------------------------------------------------
# the outputs as artifacts: manifests, one id space, --replace, killed runs
# ----------------------------------------------------------------------------
def test_manifests_list_the_part_files_with_rows_and_one_id_space(raw_tab, tmp_path):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--test-fraction", 0.3, "--lines-per-file", 4) == 0
    train, test = manifests(out, "train_data", "test_data")
    rows = 0
    for manifest, split in ((train, "train"), (test, "test")):
        folder = out / ("%s_data" % split)
        assert manifest["data_set"] == "criteo" and manifest["split"] == split and split in manifest["kind"]
        files, _ = read_split(folder)
        assert list_data_files(str(folder), "runner.%s_data_dir" % split) == [str(folder / f) for f in files]
        for name in files:
            assert manifest["files"][name] == {"bytes": os.path.getsize(folder / name),
                                               "rows": len((folder / name).read_text().splitlines())}
        rows += sum(info["rows"] for info in manifest["files"].values())
    assert rows == 20 and len(train["files"]) == 4 and len(test["files"]) == 2
    id_space = train["fingerprints"]["id_space"]
    assert test["fingerprints"]["id_space"] == id_space and len(id_space) == 16
    # the manifest says what the id space is the fingerprint of
    assert train["encoding"] == test["encoding"] and pp.fingerprint(train["encoding"]) == id_space
    assert train["encoding"]["hash_buckets"] == BUCKETS
    assert train["encoding"]["raw_sha256"] == pp.hashlib.sha256(open(raw_tab, "rb").read()).hexdigest()


def test_id_space_changes_with_what_decides_the_ids_and_rows_only(raw_tab, tmp_path):
    def id_space(name, *opts, raw=raw_tab):
        assert run(raw, tmp_path / name, "--test-fraction", 0.3, *opts) == 0
        spaces = {m["fingerprints"]["id_space"] for m in manifests(tmp_path / name, "train_data", "test_data")}
        assert len(spaces) == 1
        return spaces.pop()

    base = id_space("base")
    assert id_space("files", "--lines-per-file", 3, "--block-mb", 0.001) == base
    others = [id_space("buckets", "--hash-buckets", 1000), id_space("seed", "--seed", 7),
              id_space("fraction", "--test-fraction", 0.5), id_space("prefix", "--max-rows", 10),
              id_space("raw", raw=write(tmp_path / "other.txt", tab_text(make_rows(20, seed=5))))]
    assert len(set(others + [base])) == 6


def test_existing_output_is_refused_without_replace_and_replaced_whole_with_it(raw_tab, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--test-fraction", 0.3, "--lines-per-file", 4) == 0
    first = tree_bytes(out)
    capsys.readouterr()
    assert run(raw_tab, out, "--test-fraction", 0.3) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: %s already holds files" % (out / "train_data") in err, err
    assert "--replace" in err
    assert tree_bytes(out) == first
    shutil.rmtree(out / "train_data")  # a test folder alone is refused as well
    assert run(raw_tab, out, "--test-fraction", 0.3) == 2
    assert "%s already holds files" % (out / "test_data") in capsys.readouterr().err
    assert not (out / "train_data").exists()
    # with --replace, from another raw input with other part sizes: no file of the first run survives
    other = write(tmp_path / "other.txt", tab_text(make_rows(30, seed=5)))
    assert run(other, out, "--test-fraction", 0.5, "--lines-per-file", 100, "--replace") == 0
    assert run(other, tmp_path / "fresh", "--test-fraction", 0.5, "--lines-per-file", 100) == 0
    assert contents(out) == contents(tmp_path / "fresh")
    assert sorted(os.listdir(out / "train_data")) == [MANIFEST, "part-00000.txt"]
    assert not set(tree_bytes(out).items()) & set(first.items())


def test_a_second_run_into_the_same_out_at_the_same_time_is_refused(raw_tab, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    held = os.open(out, os.O_RDONLY)  # as a running preprocess.py holds it
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert run(raw_tab, out) == 2
    finally:
        os.close(held)
    assert "%s is being written by another run" % out in capsys.readouterr().err
    assert os.listdir(out) == []
    assert run(raw_tab, out) == 0


def in_child(work, kill_after=None):
    """Run work() in a forked child process, its return value the exit status; with kill_after,
    SIGKILL it after that many seconds. Returns the exit code (-9: killed)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            status = work()
        finally:
            os._exit(status)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)  # one that has exited already is a zombie until waited for
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


STOPPED = 137


def stopping_at(step, work):
    """work() - in a child - stopped dead (os._exit, as kill -9: no clean-up runs) just before its
    step-th rename, folder removal or fsync: the moments at which a run changes what is on disk."""
    calls = [0]

    def stop_before(real):
        def call(*args, **kwargs):
            calls[0] += 1
            if calls[0] == step:
                os._exit(STOPPED)
            return real(*args, **kwargs)
        return call
    os.replace, shutil.rmtree, os.fsync = stop_before(os.replace), stop_before(shutil.rmtree), stop_before(os.fsync)
    return work()


def folder_state(path):
    """What a reader finds under the final name ``path``: None when nothing is there (and then
    list_data_files raises), else the contents - of a data folder only through its complete manifest."""
    if not os.path.lexists(path):
        with pytest.raises(FileNotFoundError):
            list_data_files(str(path), "runner.train_data_dir")
        return None
    if os.path.isfile(path):  # a side file (meta.json): whole JSON
        json.loads(open(path, "rb").read())
        return open(path, "rb").read()
    assert os.path.isfile(os.path.join(path, MANIFEST)), "%s has no manifest" % path
    list_data_files(str(path), "runner.train_data_dir")  # every listed file there, whole; nothing else
    return contents(path)


def killed_runs(out, names, put_old, run_new, new, seed, random_kills=4):
    """Kill ``run_new`` (a --replace run into ``out``, in-process) at every step of its writing and
    publishing in turn, then at ``random_kills`` random moments (seeded), each time from the old
    output (``put_old()``). After each kill every output ``names`` is absent, the old one or the
    new one, whole - never half, never without its manifest; and a rerun gives exactly ``new``
    ({name: folder_state}) with nothing else left in ``out``. Returns the number of steps."""
    put_old()
    old = {name: folder_state(out / name) for name in names}
    assert all(old[name] is not None and old[name] != new[name] for name in names)

    def check_and_rerun():
        for name in names:
            assert folder_state(out / name) in (None, old[name], new[name]), name
        assert run_new() == 0
        assert {name: folder_state(out / name) for name in names} == new
        assert sorted(os.listdir(out)) == sorted(names)  # no staging or moved-aside leftovers

    step = 0
    while True:
        step += 1
        assert step < 100
        put_old()
        status = in_child(lambda: stopping_at(step, run_new))
        check_and_rerun()
        if status == 0:
            break
        assert status == STOPPED
    put_old()
    started = time.monotonic()
    assert run_new() == 0
    seconds = time.monotonic() - started
    rng = random.Random(seed)
    for _ in range(random_kills):
        put_old()
        in_child(run_new, kill_after=rng.uniform(0, seconds))
        check_and_rerun()
    return step - 1


def test_killed_runs_leave_the_old_or_the_whole_new_output_and_a_rerun_matches(tmp_path):
    raw = write(tmp_path / "train.txt", tab_text(make_rows(100, seed=4)) * 4)  # 400 rows
    opts = ("--test-fraction", 0.3, "--lines-per-file", 100, "--block-mb", 0.1)
    names = ["train_data", "test_data"]
    assert run(raw, tmp_path / "new", *opts) == 0
    new = {name: folder_state(tmp_path / "new" / name) for name in names}
    assert run(write(tmp_path / "old.txt", tab_text(make_rows(30, seed=3))), tmp_path / "old", "--lines-per-file", 7) == 0
    out = tmp_path / "out"

    def put_old():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tmp_path / "old", out)

    steps = killed_runs(out, names, put_old, lambda: run(raw, out, *opts, "--replace"), new, seed=11)
    assert steps >= 5 + 2 * 2  # an fsync per part file, and each folder's manifest and two renames


def test_run_sh_with_raw_dir(tmp_path):
    raw = tmp_path / "raw dir"  # a space in the path on purpose
    raw.mkdir()
    write(raw / "train.txt", tab_text(hand_rows()))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", RUN_SH, "--raw", str(raw), "--out", str(out)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["slot_test_data_full", "slot_train_data_full"]
    _, train = read_split(out / "slot_train_data_full")
    _, test = read_split(out / "slot_test_data_full")
    assert len(train) + len(test) == 20
    assert all(len(line.split(" ")) == 40 for line in train + test)
    assert "train:" in proc.stdout and "test:" in proc.stdout
    # options after -- reach preprocess.py; unknown options are refused
    # a second run into the same --out: refused naming the folder, unless --replace
    first = tree_bytes(out)
    proc = subprocess.run(["bash", RUN_SH, "--raw", str(raw), "--out", str(out)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "%s already holds files" % (out / "slot_train_data_full") in proc.stderr
    assert tree_bytes(out) == first
    # options after -- reach preprocess.py; unknown options are refused
    proc = subprocess.run(["bash", RUN_SH, "--raw", str(raw), "--out", str(out), "--replace", "--",
                           "--test-fraction", "0"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(out / "slot_test_data_full") == [MANIFEST]
    assert len(read_split(out / "slot_train_data_full")[1]) == 20
    proc = subprocess.run(["bash", RUN_SH, "--bogus"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr
    proc = subprocess.run(["bash", RUN_SH, "--raw", str(tmp_path / "nowhere")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_shipped_deepfm_samples_are_well_formed():
    data = os.path.join(REPO, "models", "rank", "deepfm", "data")
    splits = {}
    for split, name in (("train", "sample_train.txt"), ("test", "sample_test.txt")):
        with open(os.path.join(data, split, name)) as f:
            splits[split] = f.read().splitlines()
        labels = set()
        for line in splits[split]:
            fields = line.split(" ")
            assert [x.split(":")[0] for x in fields] == KEYS
            labels.add(fields[0])
        assert labels == {"click:0", "click:1"}
    assert not set(splits["train"]) & set(splits["test"])

"""Tests of datasets/criteo/preprocess.py and datasets/criteo/run.sh on hand-made raw files."""
import importlib.util
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

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
    files = sorted(os.listdir(folder))
    lines = []
    for name in files:
        with open(os.path.join(folder, name)) as f:
            lines.extend(f.read().splitlines())
    return files, lines


def tree_bytes(root):
    result = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                result[os.path.relpath(p, root)] = f.read()
    return result


@pytest.fixture
def raw_tab(tmp_path):
    return write(tmp_path / "train.txt", tab_text(hand_rows()))


def test_format_and_normalisation(raw_tab, tmp_path):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--test-fraction", 0) == 0
    files, lines = read_split(out / "train_data")
    assert files == ["part-00000.txt"]
    assert os.listdir(out / "test_data") == []
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
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a and a == b


def test_block_size_does_not_change_output(raw_tab, tmp_path):
    assert run(raw_tab, tmp_path / "a", "--test-fraction", 0.3) == 0
    assert run(raw_tab, tmp_path / "b", "--test-fraction", 0.3, "--block-mb", 0.001) == 0
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


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
    expected = tree_bytes(tmp_path / "t")
    assert tree_bytes(tmp_path / "c") == expected
    assert tree_bytes(tmp_path / "f") == expected
    # a header naming the same columns in another order is honoured
    lines = csv_text(rows).splitlines()
    cols = [line.split(",") for line in lines]
    order = [0] + list(range(14, 40)) + list(range(1, 14))
    write(tmp_path / "perm.csv", "\n".join(",".join(c[i] for i in order) for c in cols) + "\n")
    assert run(tmp_path / "perm.csv", tmp_path / "p", "--test-fraction", 0.3) == 0
    assert tree_bytes(tmp_path / "p") == expected


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


def test_failed_run_keeps_previous_output_and_stale_staging_is_ignored(raw_tab, tmp_path):
    out = tmp_path / "out"
    assert run(raw_tab, out, "--test-fraction", 0.3) == 0
    good = tree_bytes(out)
    # a bad run must not touch the published output
    bad = write(tmp_path / "bad.txt", "1\t2\n")
    assert run(bad, out) == 2
    assert tree_bytes(out) == good
    # leftovers of a crashed run (staging folder) and stale part files are not mixed in
    stale = out / pp.STAGING_NAME / "train_data"
    stale.mkdir(parents=True)
    write(stale / "part-00007.txt", "junk\n")
    write(out / "train_data" / "part-00009.txt", "old\n")
    assert run(raw_tab, out, "--test-fraction", 0.3) == 0
    assert tree_bytes(out) == good


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
    proc = subprocess.run(["bash", RUN_SH, "--raw", str(raw), "--out", str(out), "--",
                           "--test-fraction", "0"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(out / "slot_test_data_full") == []
    proc = subprocess.run(["bash", RUN_SH, "--bogus"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown argument" in proc.stderr


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

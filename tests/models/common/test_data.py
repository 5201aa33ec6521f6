"""The data layer: slot-format parsing (every line checked), the columnar cache (built once,
rebuilt when its source or schema changes, never read half-written) and batch planning."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import models.common.data as data
from models.common.data import CachedDataset, DataFormatError, SlotParser
from models.common.features import DenseFeature, GroupKey, Label, Schema, SequenceFeature, SparseFeature
from tests.conftest import REPO, write_criteo_like
from tools.utils.config import Config
from models.common.data.loader import plan_batches

SLOTS = ["click"] + ["dense_feature"] * 13 + [str(i) for i in range(1, 27)]


def criteo_schema(vocab=1000):
    return Schema([Label("click"), DenseFeature("dense_feature", 13)]
                  + [SparseFeature(str(i), vocab, 4, shared_with=None if i == 1 else "1") for i in range(1, 27)])


def config(tmp_path, **runner):
    runner.setdefault("data_cache_dir", str(tmp_path / "cache"))
    return Config({"runner": runner, "hyper_parameters": {}}, str(tmp_path / "config.yaml"))


def load(paths, tmp_path, schema=None, messages=None, **runner):
    say = messages.append if messages is not None else (lambda m: None)
    return CachedDataset([str(p) for p in paths], config(tmp_path, **runner), schema or criteo_schema(), SlotParser(SLOTS),
                         say=say)


def expected_rows(path):
    """The rows of a well-formed slot file, parsed the slow obvious way."""
    rows = []
    for line in open(path):
        if line.strip():
            rows.append([float(t.split(":")[1]) for t in line.split()])
    return np.array(rows)


def as_matrix(dataset):
    batch = dataset.take(np.arange(len(dataset)))
    return np.column_stack([batch["click"], batch["dense_feature"]] + [batch[str(i)] for i in range(1, 27)])


# ---- parsing --------------------------------------------------------------------------------------
def test_parse_matches_written_values(tmp_path):
    (path,) = write_criteo_like(tmp_path / "d", 50, seed=3)
    dataset = load([path], tmp_path)
    batch = dataset.take(np.arange(50))
    assert batch["click"].dtype == np.float32 and batch["1"].dtype == np.int64
    assert batch["dense_feature"].shape == (50, 13) and batch["26"].shape == (50,)
    np.testing.assert_array_equal(as_matrix(dataset), expected_rows(path).astype(np.float32))


def test_chunked_conversion_equals_whole_file_and_keeps_line_numbers(tmp_path, monkeypatch):
    (path,) = write_criteo_like(tmp_path / "d", 300, seed=5, bad_line=(0, 250, "click:1 oops"))
    monkeypatch.setattr(data.parsers, "CHUNK_BYTES", 1000)  # ~4 lines per chunk
    with pytest.raises(DataFormatError, match=f"{path}, line 250: expected 40 fields"):
        load([path], tmp_path)
    chunks = []
    monkeypatch.setattr(data.Chunk, "__init__", _recording(data.Chunk.__init__, chunks))
    small = load([path], tmp_path, skip_bad_lines=True)
    assert len(chunks) > 50  # really converted piecewise
    monkeypatch.setattr(data.parsers, "CHUNK_BYTES", 1 << 24)
    whole = load([path], tmp_path / "other", skip_bad_lines=True)
    assert small.skipped_lines == whole.skipped_lines == 1 and len(small) == 299
    np.testing.assert_array_equal(as_matrix(small), as_matrix(whole))


def _recording(init, calls):
    def wrapper(self, *args, **kwargs):
        calls.append(1)
        init(self, *args, **kwargs)
    return wrapper


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t + ["27:5"], "expected 40 fields"),
    (lambda t: t[:-1], "expected 40 fields"),
    (lambda t: t[:2] + ["dense_feature:abc"] + t[3:], "field 3 (dense_feature) has value 'abc'"),
    (lambda t: t[:20] + ["7:1.5"] + t[21:], "7 has value 1.5, expected an integer"),
    (lambda t: t[:16] + ["x" + t[16]] + t[17:], "field 17 is 'x3:"),  # wrong slot name in place of 3:
    (lambda t: t[:16] + [t[16].replace("3:", "4:")] + t[17:], "field 17 is '4:"),
    (lambda t: ["click:2"] + t[1:], "label click has value 2, expected one of [0, 1]"),
    (lambda t: ["click:-1"] + t[1:], "label click has value -1"),
    (lambda t: t[:1] + ["dense_feature:nan"] + t[2:], "dense_feature has value nan, expected a finite number"),
    (lambda t: t[:1] + ["dense_feature:inf"] + t[2:], "dense_feature has value inf, expected a finite number"),
    (lambda t: t[:14] + ["1:1000"] + t[15:], "1 has value 1000 outside [0, 999]"),
    (lambda t: t[:14] + ["1:-3"] + t[15:], "1 has value -3 outside [0, 999]"),
    (lambda t: t[:14] + ["1:"] + t[15:], "field 15 is '1:'"),
    (lambda t: t[:14] + ["1:2:3"] + t[15:], "field 15 is '1:2:3'"),
])
def test_bad_line_names_file_and_line(tmp_path, mutate, message):
    (good,) = write_criteo_like(tmp_path / "good", 30, seed=4)
    tokens = open(good).read().splitlines()[6].split()
    (path,) = write_criteo_like(tmp_path / "bad", 30, seed=4, bad_line=(0, 7, " ".join(mutate(tokens))))
    with pytest.raises(DataFormatError) as error:
        load([path], tmp_path)
    assert f"{path}, line 7: " in str(error.value) and message in str(error.value), str(error.value)
    dataset = load([path], tmp_path, skip_bad_lines=True)
    assert dataset.skipped_lines == 1 and len(dataset) == 29
    rows = expected_rows(good)
    np.testing.assert_array_equal(as_matrix(dataset), np.delete(rows, 6, axis=0).astype(np.float32))


def test_spacing_and_blank_lines_do_not_change_values(tmp_path):
    """Extra spaces, tabs, CRLF, trailing blanks and blank lines are whitespace: same rows as the clean file."""
    (clean,) = write_criteo_like(tmp_path / "clean", 20, seed=6)
    lines = open(clean).read().splitlines()
    lines[4] = lines[4].replace(" 1:", "  1:")  # PaddleRec's doubled space before 1:
    lines[5] = "  " + lines[5].replace(" ", "\t", 3) + "   "
    lines[6] = lines[6] + "\r"
    messy = tmp_path / "messy" / "part-0.txt"
    messy.parent.mkdir()
    messy.write_text("\n".join(lines[:10] + [""] + lines[10:]) + "\n")
    np.testing.assert_array_equal(as_matrix(load([messy], tmp_path)), as_matrix(load([clean], tmp_path)))


def test_mutation_fuzz_parses_intended_rows_or_names_the_line(tmp_path):
    """Random mutations of valid lines: either the file parses to exactly the rows a careful
    reader sees, or the error names the file and the mutated line. Never other rows, never a traceback."""
    (good,) = write_criteo_like(tmp_path / "good", 12, seed=7, num_ids=1000)
    base = open(good).read().splitlines()
    rng = np.random.default_rng(0)
    junk = ["abc", "1_000", "nan", "inf", "-1", "1e400", "0x1F", "", ":", "2", "1.5", "999999999999", "dense_feature"]

    def mutate(tokens):
        tokens = list(tokens)
        kind = rng.integers(7)
        i = int(rng.integers(len(tokens)))
        if kind == 0:
            del tokens[i]
        elif kind == 1:
            tokens.insert(i, tokens[i])
        elif kind == 2:
            j = int(rng.integers(len(tokens)))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == 3:
            tokens[i] = tokens[i].split(":")[0] + ":" + str(rng.choice(junk))
        elif kind == 4:
            tokens[i] = tokens[i].replace(":", str(rng.choice([";", "=", "::", " : "])), 1)
        elif kind == 5:
            return ",".join(tokens)
        else:
            tokens[i] = str(rng.choice(junk)) + ":" + tokens[i].split(":")[1]
        return " ".join(tokens)

    def careful(line):
        """The row a strict reader gets from one line, or None if the line is invalid."""
        tokens = line.split()
        if len(tokens) != len(SLOTS):
            return None
        values = []
        for token, name in zip(tokens, SLOTS):
            key, sep, value = token.partition(":")
            if key != name or not sep or ":" in value or "_" in value:
                return None
            try:
                number = float(value)
            except ValueError:
                return None
            if not np.isfinite(number):
                return None
            values.append(number)
        ids = np.array(values[14:])
        if values[0] not in (0, 1) or (ids != np.floor(ids)).any() or ids.min() < 0 or ids.max() > 999:
            return None
        return values

    for trial in range(60):
        lines = list(base)
        line_no = int(rng.integers(1, len(lines) + 1))
        lines[line_no - 1] = mutate(lines[line_no - 1].split())
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        path = folder / "part-0.txt"
        path.write_text("\n".join(lines) + "\n")
        intended = careful(lines[line_no - 1])
        try:
            got = as_matrix(load([path], tmp_path / f"c{trial}"))
        except DataFormatError as error:
            assert intended is None, f"valid line {lines[line_no - 1]!r} rejected: {error}"
            assert f"{path}, line {line_no}: " in str(error)
            continue
        assert intended is not None, f"invalid line {lines[line_no - 1]!r} accepted"
        want = expected_rows(good)
        want[line_no - 1] = intended
        np.testing.assert_array_equal(got, want.astype(np.float32))


# ---- the cache ------------------------------------------------------------------------------------
def test_second_run_uses_the_cache_without_parsing(tmp_path, monkeypatch):
    (path,) = write_criteo_like(tmp_path / "d", 40, seed=1)
    messages = []
    first = as_matrix(load([path], tmp_path, messages=messages))
    assert any("converting" in m for m in messages)
    monkeypatch.setattr(SlotParser, "read", lambda *a, **k: pytest.fail("parsed again"))
    messages.clear()
    dataset = load([path], tmp_path, messages=messages)
    assert messages == [] and isinstance(dataset.parts[0]["int"], np.memmap)
    np.testing.assert_array_equal(as_matrix(dataset), first)


def test_default_cache_is_hidden_beside_the_data(tmp_path):
    (path,) = write_criteo_like(tmp_path / "d", 10, seed=1)
    config_ = Config({"runner": {}, "hyper_parameters": {}}, str(tmp_path / "c.yaml"))
    dataset = CachedDataset([path], config_, criteo_schema(), SlotParser(SLOTS), say=lambda m: None)
    assert dataset.cache_dir == str(tmp_path / "d" / ".rec_cache")
    assert data.list_data_files(str(tmp_path / "d"), "k") == [path]  # the cache is not taken for data


def test_changed_source_or_schema_rebuilds(tmp_path):
    (path,) = write_criteo_like(tmp_path / "d", 40, seed=1)
    messages = []
    load([path], tmp_path, messages=messages)
    write_criteo_like(tmp_path / "d", 30, seed=2)  # same name, new content
    messages.clear()
    dataset = load([path], tmp_path, messages=messages)
    assert len(dataset) == 30 and any("converting" in m for m in messages)
    messages.clear()
    load([path], tmp_path, schema=criteo_schema(vocab=2000), messages=messages)
    assert any("converting" in m for m in messages)
    assert len(os.listdir(tmp_path / "cache")) == 1  # the stale cache is removed, and no lock file is left


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta"])
def test_damaged_cache_is_rebuilt_not_read(tmp_path, damage):
    (path,) = write_criteo_like(tmp_path / "d", 40, seed=1)
    good = as_matrix(load([path], tmp_path))
    (folder,) = [f for f in (tmp_path / "cache").iterdir() if f.is_dir()]
    target = folder / "int.npy"
    if damage == "truncate":
        with open(target, "r+b") as f:
            f.truncate(os.path.getsize(target) - 100)
    elif damage == "delete":
        target.unlink()
    else:
        (folder / "meta.json").write_text("{")
    messages = []
    np.testing.assert_array_equal(as_matrix(load([path], tmp_path, messages=messages)), good)
    assert any("converting" in m for m in messages)


def test_conversion_killed_midway_leaves_nothing_usable(tmp_path):
    """kill -9 during conversion: the staging folder is never used and the next run rebuilds."""
    (path,) = write_criteo_like(tmp_path / "d", 20000, seed=1)
    script = (f"import sys; sys.path.insert(0, {REPO!r}); import time, models.common.data.cache as d, models.common.data.parsers as p\n"
              f"from tests.models.common.test_data import load\n"
              f"p.CHUNK_BYTES = 4096\n"
              f"real = d._BlockWriter.append\n"
              f"def slow(self, block):\n    real(self, block); time.sleep(0.01)\n"
              f"d._BlockWriter.append = slow\n"
              f"import pathlib; load([{path!r}], pathlib.Path({str(tmp_path)!r}))\n")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    cache = tmp_path / "cache"
    deadline = time.time() + 60
    while time.time() < deadline and not any(n.startswith(".tmp-") for n in (os.listdir(cache) if cache.exists() else [])):
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert any(n.startswith(".tmp-") for n in os.listdir(cache)), "the conversion was not caught midway"
    assert not any(f.is_dir() and not f.name.startswith(".") for f in cache.iterdir())
    messages = []
    dataset = load([path], tmp_path, messages=messages)
    assert len(dataset) == 20000 and any("converting" in m for m in messages)
    assert not any(n.startswith(".tmp-") for n in os.listdir(cache))


def test_unwritable_cache_folder_names_the_key(tmp_path):
    (path,) = write_criteo_like(tmp_path / "d", 10, seed=1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="runner.data_cache_dir"):
        load([path], tmp_path, data_cache_dir=str(blocker / "cache"))


def test_several_files_are_one_dataset(tmp_path):
    paths = write_criteo_like(tmp_path / "d", 100, seed=2, files=3)
    dataset = load(paths, tmp_path)
    assert len(dataset) == 100 and len(dataset.parts) == 3
    want = np.concatenate([expected_rows(p) for p in paths]).astype(np.float32)
    order = np.random.default_rng(0).permutation(100)
    got = dataset.take(order)
    np.testing.assert_array_equal(got["dense_feature"], want[order, 1:14])
    np.testing.assert_array_equal(got["26"], want[order, 39])


def test_sequence_features_and_keys(tmp_path):
    schema = Schema([Label("y"), GroupKey("task"), SparseFeature("a", 5, 3),
                     SequenceFeature("hist", 10, 3, max_len=4, shared_with=None)])
    columns = {"y": np.array([0, 1]), "task": np.array([7, 8]), "a": np.array([4, 0]),
               "hist": np.array([[1, 2, 0, 0], [9, 9, 9, 9]]), "hist_length": np.array([2, 4])}
    blocks, bad = schema.pack(columns, lambda i: f"row {i}")
    assert bad is None
    batch = schema.unpack(blocks)
    np.testing.assert_array_equal(batch["hist"], columns["hist"])
    np.testing.assert_array_equal(batch["hist_length"], [2, 4])
    columns["hist_length"] = np.array([2, 5])
    _, (mask, message) = schema.pack(columns, lambda i: f"f.npz, row {i}")
    assert mask.tolist() == [False, True] and message == "f.npz, row 1: hist_length has value 5 outside [0, 4] (max_len of hist)"


# ---- batch planning -------------------------------------------------------------------------------
@pytest.mark.parametrize("shuffle", [True, "block"])
@pytest.mark.parametrize("rows, batch, world", [(100, 32, 1), (101, 10, 2), (7, 3, 3), (64, 32, 2), (65, 32, 2), (9, 4, 4)])
def test_batch_plan_covers_every_row_once_with_equal_steps(rows, batch, world, shuffle):
    plans = [plan_batches(rows, batch, epoch=1, seed=5, shuffle=shuffle, rank=r, world_size=world, block_rows=4,
                          window_blocks=2) for r in range(world)]
    seen = np.concatenate([np.concatenate(list(p)) for p in plans])
    assert sorted(seen.tolist()) == list(range(rows))
    assert len({len(p) for p in plans}) == 1  # ranks step together
    assert all(len(b) <= batch for p in plans for b in p)


def test_global_shuffle_is_the_seeded_permutation():
    plan = plan_batches(50, 10, epoch=3, seed=1, shuffle=True)
    np.testing.assert_array_equal(np.concatenate(list(plan)), np.random.default_rng([1, 3]).permutation(50))


@pytest.mark.parametrize("shuffle", [True, "block"])
def test_batch_plan_is_seeded_by_epoch(shuffle):
    def order(epoch, seed=1):
        return np.concatenate(list(plan_batches(50, 10, epoch=epoch, seed=seed, shuffle=shuffle, block_rows=5,
                                                window_blocks=2)))
    np.testing.assert_array_equal(order(0), order(0))
    assert not np.array_equal(order(0), order(1)) and not np.array_equal(order(0), order(0, seed=2))
    assert [len(x) for x in plan_batches(50, 20)] == [20, 20, 10]


def test_block_shuffle_reads_one_window_at_a_time():
    """Rows stay within windows of window_blocks blocks: a batch spans at most 2 windows' rows."""
    rows, block, window = 1000, 50, 4
    plan = plan_batches(rows, 100, epoch=0, seed=3, shuffle="block", block_rows=block, window_blocks=window)
    order = np.concatenate(list(plan))
    assert sorted(order.tolist()) == list(range(rows))
    for start in range(0, rows, block * window):  # each window is a set of whole blocks
        blocks = np.unique(order[start:start + block * window] // block)
        assert len(blocks) == window
    assert not np.array_equal(order[:block], np.arange(block) + order[0] // block * block)  # shuffled inside

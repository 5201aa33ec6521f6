"""Slot-format parsing, bad lines, and batch planning."""
import numpy as np
import pytest

from models.common.data import DataFormatError, read_slot_file
from tests.conftest import write_criteo_like
from tools.utils.data import plan_batches

SLOTS = [("click", int)] + [("dense_feature", float)] * 13 + [(str(i), int) for i in range(1, 27)]


def test_parse_matches_written_values(tmp_path):
    (path,) = write_criteo_like(tmp_path, 50, seed=3)
    arrays, skipped = read_slot_file(path, SLOTS)
    assert skipped == 0 and len(arrays) == 40 and all(len(a) == 50 for a in arrays)
    first = open(path).readline().split()
    assert arrays[0][0] == int(first[0].split(":")[1])
    assert arrays[1][0] == np.float32(first[1].split(":")[1])
    assert arrays[14][0] == int(first[14].split(":")[1])
    assert arrays[1].dtype == np.float32 and arrays[14].dtype == np.int64


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t + ["27:5"], "expected 40 fields"),
    (lambda t: t[:-1], "expected 40 fields"),
    (lambda t: t[:2] + ["dense_feature:abc"] + t[3:], "field 3 (dense_feature) has value 'abc'"),
    (lambda t: t[:20] + ["7:1.5"] + t[21:], "field 21 (7) has value '1.5', expected an integer"),
])
def test_bad_line_names_file_and_line(tmp_path, mutate, message):
    (good,) = write_criteo_like(tmp_path / "good", 30, seed=4)
    tokens = open(good).read().splitlines()[6].split()
    (path,) = write_criteo_like(tmp_path / "bad", 30, seed=4, bad_line=(0, 7, " ".join(mutate(tokens))))
    with pytest.raises(DataFormatError) as error:
        read_slot_file(path, SLOTS)
    assert f"{path}, line 7" in str(error.value) and message in str(error.value)
    arrays, skipped = read_slot_file(path, SLOTS, skip_bad_lines=True)
    assert skipped == 1 and len(arrays[0]) == 29


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n")
    arrays, skipped = read_slot_file(str(path), SLOTS)
    assert all(len(a) == 0 for a in arrays) and skipped == 0


@pytest.mark.parametrize("rows, batch, world", [(100, 32, 1), (101, 10, 2), (7, 3, 3), (64, 32, 2), (65, 32, 2), (9, 4, 4)])
def test_batch_plan_covers_every_row_once_with_equal_steps(rows, batch, world):
    plans = [plan_batches(rows, batch, epoch=1, seed=5, shuffle=True, rank=r, world_size=world) for r in range(world)]
    seen = np.concatenate([np.concatenate(p) for p in plans])
    assert sorted(seen.tolist()) == list(range(rows))
    assert len({len(p) for p in plans}) == 1  # ranks step together
    assert all(len(b) <= batch for p in plans for b in p)


def test_batch_plan_is_seeded_by_epoch():
    a = plan_batches(50, 10, epoch=0, seed=1, shuffle=True)
    b = plan_batches(50, 10, epoch=0, seed=1, shuffle=True)
    c = plan_batches(50, 10, epoch=1, seed=1, shuffle=True)
    assert all((x == y).all() for x, y in zip(a, b))
    assert not all((x == y).all() for x, y in zip(a, c))
    assert [len(x) for x in plan_batches(50, 20)] == [20, 20, 10]

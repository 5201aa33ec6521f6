"""Every kind of bad input ends with a clear message (exit 2) or the original traceback, fast,
and never leaves a half-written checkpoint or output file behind."""
import importlib
import os
import shutil

import paddle
import pytest

from tests.conftest import model_config, DEEPFM_CONFIG, run_tool, write_criteo_like
from tests.tools.test_distributed import TINY, write_tiny_data
from tools.utils import checkpoint


def leftovers(folder):
    """Temporary or partial files anywhere under ``folder``."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.join(root, n) for n in dirs + files if n.startswith(".")]
    return found


def tiny(tmp_path, *overrides, script="tools/trainer.py", timeout=120):
    if not (tmp_path / "data").exists():
        write_tiny_data(tmp_path / "data", 40)
    return run_tool(script, "-m", TINY, "-o", f"runner.train_data_dir={tmp_path / 'data'}",
                    f"runner.test_data_dir={tmp_path / 'data'}", f"runner.model_save_path={tmp_path / 'ckpt'}",
                    *overrides, timeout=timeout)


def ok(result):
    """A run that ended with exit 0; -> its log (stdout and stderr)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_missing_config_file(tmp_path):
    assert_user_error(run_tool("tools/trainer.py", "-m", str(tmp_path / "none.yaml")), "none.yaml", "does not exist")


def test_yaml_syntax_error_shows_line(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(os.path.dirname(TINY), folder)
    text = open(TINY).read().replace("  epochs: 2", "  epochs: [2")
    (folder / "config.yaml").write_text(text)
    line = text.splitlines().index("  epochs: [2") + 1
    result = run_tool("tools/trainer.py", "-m", str(folder / "config.yaml"))
    assert_user_error(result, "config.yaml", "invalid YAML")
    assert f"line {line}" in result.stderr or f"line {line + 1}" in result.stderr


def test_unknown_override_key(tmp_path):
    assert_user_error(tiny(tmp_path, "runner.epoch=3"), "runner.epoch", "closest existing key: 'runner.epochs'")


def test_missing_and_empty_data_dir(tmp_path):
    assert_user_error(tiny(tmp_path, f"runner.train_data_dir={tmp_path / 'nope'}"), "runner.train_data_dir", "does not exist")
    (tmp_path / "empty").mkdir()
    assert_user_error(tiny(tmp_path, f"runner.train_data_dir={tmp_path / 'empty'}"), "runner.train_data_dir", "no files")
    assert not (tmp_path / "ckpt").exists() or not os.listdir(tmp_path / "ckpt")


@pytest.mark.parametrize("mutate, message", [
    (lambda t: ["click:1", "dense_feature:0.5"], "expected 40 fields"),
    (lambda t: t[:5] + ["dense_feature:x"] + t[6:], "has value 'x'"),
    (lambda t: t[:16] + ["x" + t[16]] + t[17:], "field 17 is 'x3:"),  # a wrong slot name
    (lambda t: ["click:2"] + t[1:], "label click has value 2, expected one of [0, 1]"),
    (lambda t: ["click:-1"] + t[1:], "label click has value -1"),
    (lambda t: t[:3] + ["dense_feature:nan"] + t[4:], "dense_feature has value nan, expected a finite number"),
    (lambda t: t[:3] + ["dense_feature:inf"] + t[4:], "dense_feature has value inf, expected a finite number"),
    (lambda t: t[:20] + ["7:5000"] + t[21:], "7 has value 5000 outside [0, 999]"),
], ids=["fields", "number", "slot-name", "label-2", "label-minus-1", "nan", "inf", "id-range"])
def test_bad_data_line(tmp_path, mutate, message):
    """Every malformed row ends the run with one line naming file and line (issue: rows misread
    silently, labels and non-finite values unchecked); skip_bad_lines drops exactly that row."""
    (good,) = write_criteo_like(tmp_path / "ref", 100, seed=9)
    tokens = open(good).read().splitlines()[41].split()
    bad = " ".join(mutate(tokens))
    files = write_criteo_like(tmp_path / "train", 100, seed=9, files=2, bad_line=(1, 8, bad))
    common = [f"runner.train_data_dir={tmp_path / 'train'}", f"runner.model_save_path={tmp_path / 'ckpt'}",
              "hyper_parameters.sparse_feature_number=1000", "hyper_parameters.fc_sizes=[8]", "runner.epochs=1"]
    result = run_tool("tools/trainer.py", "-m", DEEPFM_CONFIG, "-o", *common)
    assert_user_error(result, f"{files[1]}, line 8", message)
    assert not (tmp_path / "ckpt").exists()  # a failed run leaves no (empty) output folder
    result = run_tool("tools/trainer.py", "-m", DEEPFM_CONFIG, "-o", *common, "runner.skip_bad_lines=true")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 malformed lines" in result.stdout
    assert "samples: 99" in result.stdout


def test_doubled_space_reads_the_intended_row(tmp_path):
    """PaddleRec's reader turned a doubled space before '1:' into ids 1..26; here it is whitespace."""
    files = write_criteo_like(tmp_path / "train", 64, seed=9)
    lines = open(files[0]).read().splitlines()
    lines[4] = lines[4].replace(" 1:", "  1:")
    open(files[0], "w").write("\n".join(lines) + "\n")
    reader = importlib.import_module("models.common.datasets.criteo")
    config = model_config(DEEPFM_CONFIG, ["hyper_parameters.sparse_feature_number=1000",
                                         f"runner.data_cache_dir={tmp_path / 'cache'}"])
    row = reader.RecDataset(files, config).take([4])
    assert [int(row[str(i)][0]) for i in range(1, 27)] == [int(t.split(":")[1]) for t in lines[4].split()[14:]]


@pytest.mark.parametrize("key", ["dense_input_dim", "sparse_inputs_slots"])
def test_keys_derived_from_the_schema_are_refused(tmp_path, key):
    result = run_tool("tools/trainer.py", "-m", DEEPFM_CONFIG, "-o", f"hyper_parameters.{key}=10",
                      f"runner.model_save_path={tmp_path / 'ckpt'}")
    assert_user_error(result, f"hyper_parameters.{key}", "no such key")


def test_batch_larger_than_data(tmp_path):
    assert_user_error(tiny(tmp_path, "runner.train_batch_size=64"), "runner.train_batch_size is 64", "only 40 rows")


@pytest.mark.parametrize("workers", [0, 2])
def test_reader_exception_ends_run_with_traceback(tmp_path, workers):
    # Row 30 sits in a batch of epoch 0 - whichever shuffle - so epoch 0 never completes.
    result = tiny(tmp_path, "hyper_parameters.fail_on_row=30", f"runner.num_workers={workers}", timeout=60)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "reader failure on row 30" in result.stderr
    assert not os.path.exists(tmp_path / "ckpt" / "0")
    assert leftovers(tmp_path / "ckpt") == []


def test_unwritable_model_save_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_user_error(tiny(tmp_path, f"runner.model_save_path={blocker / 'ckpt'}"), "runner.model_save_path", "cannot write")


def test_infer_without_checkpoint(tmp_path):
    assert_user_error(tiny(tmp_path, script="tools/infer.py"), "runner.infer_load_path", "no complete checkpoint")


def test_failed_infer_leaves_no_output(tmp_path):
    assert tiny(tmp_path, "runner.epochs=1").returncode == 0
    (tmp_path / "badtest").mkdir()
    (tmp_path / "badtest" / "a.csv").write_text("id,label,x1,x2,x3,x4\n0,1,0.1,0.2,0.3,0.4\n")
    result = tiny(tmp_path, "runner.epochs=1", f"runner.test_data_dir={tmp_path / 'badtest'}",
                  "hyper_parameters.fail_on_row=0", f"runner.infer_output_path={tmp_path / 'pred'}",
                  script="tools/infer.py")
    assert result.returncode != 0 and "reader failure" in result.stderr
    assert not (tmp_path / "pred").exists() or os.listdir(tmp_path / "pred") == []


def test_crash_while_saving_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    model = paddle.nn.Linear(2, 1)
    optimizer = paddle.optimizer.Adam(parameters=model.parameters())
    checkpoint.save_checkpoint(str(tmp_path), 0, model, optimizer)
    calls = []
    real_save = paddle.save

    def failing_save(obj, path):
        calls.append(path)
        if path.endswith("rec.pdopt"):
            raise OSError("disk full")
        return real_save(obj, path)

    monkeypatch.setattr(checkpoint.paddle, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(str(tmp_path), 1, model, optimizer)
    assert len(calls) == 2
    assert checkpoint.complete_epochs(str(tmp_path)) == [0]
    assert sorted(os.listdir(tmp_path)) == ["0"]
    with pytest.raises(TypeError):  # not serialisable: fails half-way through writing
        checkpoint.write_json(str(tmp_path / "metrics.json"), {"a": 1, "b": object()})
    assert sorted(os.listdir(tmp_path)) == ["0"]

"""Shared test fixtures: repo root on sys.path, paths to configs and shared data, and helpers to
run the command-line tools the way a user does."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
DEEPFM_CONFIG = os.path.join(REPO, "models", "rank", "deepfm", "config.yaml")


def run_tool(script, *args, cwd=None, timeout=600, env=None):
    """Run a repo script (path relative to the repo root) with this interpreter; return the
    CompletedProcess with stdout+stderr captured as text."""
    full_env = dict(os.environ, PYTHONWARNINGS="ignore")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args], cwd=cwd or REPO, env=full_env,
        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def shared_data():
    """Path to ../shared/data, or skip the test when it is not there."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def write_criteo_like(folder, rows, seed=0, num_ids=1000, files=1, bad_line=None):
    """Write ``rows`` learnable samples in the Criteo slot format into ``folder`` (``files`` files).

    The click depends on the first sparse field (10 distinct ids) and the first dense value, so a
    model can learn it from a few hundred rows. ``bad_line`` = (file_index, line_number, text) replaces one line.
    Returns the list of file paths.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    ids = rng.integers(0, num_ids, size=(rows, 26))
    ids[:, 0] %= 10
    dense = rng.random((rows, 13)).round(4)
    click = ((ids[:, 0] % 2 == 0) | (dense[:, 0] > 0.8)).astype(int)
    lines = [
        " ".join([f"click:{click[r]}"] + [f"dense_feature:{v}" for v in dense[r]]
                 + [f"{i + 1}:{ids[r, i]}" for i in range(26)])
        for r in range(rows)
    ]
    paths = []
    for index, part in enumerate(np.array_split(np.arange(rows), files)):
        chunk = [lines[r] for r in part]
        if bad_line is not None and bad_line[0] == index:
            chunk[bad_line[1] - 1] = bad_line[2]
        path = os.path.join(folder, f"part-{index}.txt")
        with open(path, "w") as f:
            f.write("\n".join(chunk) + "\n")
        paths.append(path)
    return paths


@pytest.fixture
def criteo_run(tmp_path):
    """Small learnable Criteo-like train/test data and the -o overrides that point DeepFM at it
    (1000-id table: fast to train and to checkpoint)."""
    write_criteo_like(tmp_path / "train", 600, seed=1)
    write_criteo_like(tmp_path / "test", 200, seed=2)
    overrides = [
        f"runner.train_data_dir={tmp_path / 'train'}", f"runner.test_data_dir={tmp_path / 'test'}",
        f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.infer_load_path={tmp_path / 'ckpt'}",
        "runner.epochs=2", "runner.infer_start_epoch=1", "runner.infer_end_epoch=2",
        "hyper_parameters.sparse_feature_number=1000", "hyper_parameters.fc_sizes=[32,16]",
        "runner.train_batch_size=64", "runner.print_interval=3",
    ]
    return tmp_path, overrides


def model_config(config_path, overrides=()):
    """The config of a model folder, checked against every key the model declares, defaults filled
    in (as the runners load it)."""
    from tools.utils.runtime import load_model

    return load_model(config_path, list(overrides))[0]

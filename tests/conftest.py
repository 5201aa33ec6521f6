"""Shared test fixtures: repo root on sys.path, paths to configs and shared data, and helpers to
run the command-line tools the way a user does."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
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

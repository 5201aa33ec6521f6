"""tools/demo.py's "data" column: each model's config.yaml says whether its sample is synthetic or
real, in a top-level key that the runners' config loader accepts and ignores."""
import glob
import os

from tests.conftest import REPO, model_config
from tools import demo

CONFIGS = sorted(glob.glob(os.path.join(REPO, "models", "*", "*", "config.yaml")))


def test_every_demo_config_declares_its_sample_data():
    assert CONFIGS
    kinds = {os.path.relpath(os.path.dirname(c), os.path.join(REPO, "models")): demo.sample_data(c) for c in CONFIGS}
    assert all(kind in demo.SAMPLE_KINDS for kind in kinds.values()), kinds
    assert kinds["rank/deepfm"] == "synthetic" and kinds["multitask/metaheac"] == "synthetic"


def test_sample_data_key_is_accepted_by_the_config_loader():
    for config in CONFIGS:
        loaded = model_config(config)
        assert loaded.get("sample_data") in demo.SAMPLE_KINDS
        assert "sample_data" not in loaded.get("runner")


def test_missing_or_odd_declaration_shows_a_question_mark(tmp_path):
    base = "runner:\n  epochs: 1\nhyper_parameters: {}\n"
    cases = {"none": base, "odd": "sample_data: maybe\n" + base, "real": "sample_data: real\n" + base,
             "broken": "sample_data: [\n"}
    for name, text in cases.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    assert demo.sample_data(str(tmp_path / "none.yaml")) == "?"
    assert demo.sample_data(str(tmp_path / "odd.yaml")) == "?"
    assert demo.sample_data(str(tmp_path / "broken.yaml")) == "?"
    assert demo.sample_data(str(tmp_path / "real.yaml")) == "real"
    assert demo.sample_data(str(tmp_path / "missing.yaml")) == "?"

"""Config loading, overrides, validation and path resolution."""
import os
import re

import pytest

from models.common.spec import Param
from tools.utils.config import ConfigError, load_config, read_config

BASE = """\
runner:
  train_data_dir: "data/train"
  train_reader_path: "reader"
  train_batch_size: 32
  model_save_path: "out"
  epochs: 1
hyper_parameters:
  optimizer:
    learning_rate: 0.001
  fc_sizes: [512, 256]
  dense_input_dim: 13
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "model" / "config.yaml"
    path.parent.mkdir()
    path.write_text(BASE)
    return str(path)


def test_overrides_parse_as_yaml(config_file):
    config = load_config(config_file, ["runner.epochs=2", "hyper_parameters.fc_sizes=[64,32]",
                                       "runner.use_gpu=false", "hyper_parameters.optimizer.learning_rate=1e-2"])
    assert config.get("runner.epochs") == 2
    assert config.get("hyper_parameters.fc_sizes") == [64, 32]
    assert config.get("runner.use_gpu") is False
    assert config.get("hyper_parameters.optimizer.learning_rate") == 0.01


def test_int_accepted_where_float_expected(config_file):
    assert load_config(config_file, ["hyper_parameters.optimizer.learning_rate=1"]).get(
        "hyper_parameters.optimizer.learning_rate") == 1


def test_unknown_key_names_closest(config_file):
    with pytest.raises(ConfigError) as error:
        load_config(config_file, ["runner.epoch=2"])
    assert "runner.epoch" in str(error.value) and "runner.epochs" in str(error.value)


SPEC = {"hyper_parameters.optimizer.learning_rate": Param(float, above=0, default=0.001),
        "hyper_parameters.fc_sizes": Param(list), "hyper_parameters.dense_input_dim": Param(int),
        "hyper_parameters.dropout": Param(float, min=0, below=1, default=0.0, help="dropout")}


def test_declared_keys_are_checked_filled_and_settable(config_file):
    config = load_config(config_file, spec=SPEC)
    assert config.get("hyper_parameters.dropout") == 0.0  # the declared default, absent from the file
    assert load_config(config_file, ["hyper_parameters.dropout=0.5"], spec=SPEC).get("hyper_parameters.dropout") == 0.5
    with pytest.raises(ConfigError, match=r"'hyper_parameters.dropout' must be a number >= 0 and < 1, got 1.5"):
        load_config(config_file, ["hyper_parameters.dropout=1.5"], spec=SPEC)
    with pytest.raises(ConfigError, match="override hyper_parameters.other: no such key"):
        load_config(config_file, ["hyper_parameters.other=1"], spec=SPEC)


def test_a_file_key_nothing_declares_is_refused(config_file, tmp_path):
    """A key the model does not read would be silently ignored: it is an error naming the closest
    declared key; a YAML key read as a number gets a hint."""
    text = open(config_file).read()
    path = tmp_path / "model" / "typo.yaml"
    path.write_text(text.replace("  fc_sizes:", "  fc_size:"))
    with pytest.raises(ConfigError, match="unknown key 'hyper_parameters.fc_size'; closest declared key: "
                                          "'hyper_parameters.fc_sizes'"):
        load_config(str(path), spec=SPEC)
    path.write_text(text + "  max_len: {109_14: 8}\n")
    with pytest.raises(ConfigError, match="hyper_parameters.max_len.10914.*quote it"):
        load_config(str(path), spec=SPEC)
    load_config(str(path))  # without a model's declarations only the runner section is checked
    path.write_text(text.replace("  epochs: 1\n", "  epochs: 1\n  epoch: 2\n"))
    with pytest.raises(ConfigError, match="unknown key 'runner.epoch'"):
        load_config(str(path))


def test_wrong_type_names_key(config_file):
    with pytest.raises(ConfigError) as error:
        load_config(config_file, ["runner.epochs=many"])
    assert "runner.epochs" in str(error.value) and "int" in str(error.value)
    with pytest.raises(ConfigError, match="runner.use_gpu"):
        load_config(config_file, ["runner.use_gpu=3"])


def test_bad_override_syntax(config_file):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(config_file, ["runner.epochs"])


def test_missing_required_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BASE.replace("  epochs: 1\n", ""))
    with pytest.raises(ConfigError, match="runner.epochs"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="required key 'hyper_parameters.sparse_feature_number' is missing"):
        load_config(str(path), ["runner.epochs=1"], spec={**SPEC, "hyper_parameters.sparse_feature_number": Param(int)})


def test_wrong_type_in_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BASE.replace("train_batch_size: 32", "train_batch_size: '32'"))
    with pytest.raises(ConfigError, match="runner.train_batch_size"):
        load_config(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(str(tmp_path / "nope.yaml"))


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BASE.replace("  epochs: 1\n", "  epochs: [1\n"))
    with pytest.raises(ConfigError) as error:
        read_config(str(path))
    assert str(path) in str(error.value) and "line " in str(error.value)


def test_relative_paths_resolve_against_config_folder(config_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = os.path.dirname(config_file)
    config = load_config(config_file, ["runner.model_save_path=elsewhere"])
    assert config.get("runner.train_data_dir") == os.path.join(folder, "data", "train")
    # A reader named by module (a file of the config's folder or a data set) stays a name; a reader
    # given as a path resolves like any path.
    assert config.get("runner.train_reader_path") == "reader"
    config = load_config(config_file, ["runner.infer_reader_path=sub/reader.py"])
    assert config.get("runner.infer_reader_path") == os.path.join(str(tmp_path), "sub", "reader.py")
    config = load_config(config_file, ["runner.model_save_path=elsewhere"])
    # A path typed on the command line is relative to the current directory.
    assert config.get("runner.model_save_path") == os.path.join(str(tmp_path), "elsewhere")


def test_defaults_are_filled_and_overridable(config_file):
    config = load_config(config_file, ["runner.num_workers=2"])
    assert config.get("runner.num_workers") == 2
    assert config.get("runner.seed") == 2021
    assert config.get("runner.infer_output_path") is None


def test_readme_key_tables_match_the_declarations():
    """Each readme's config-key table is the one the declarations give (tools/config_doc.py)."""
    from tools import config_doc

    assert config_doc.main(["--check"]) == 0


def test_help_config_prints_every_key_with_its_value():
    from tests.conftest import DEEPFM_CONFIG, run_tool

    result = run_tool("tools/trainer.py", "-m", DEEPFM_CONFIG, "-o", "hyper_parameters.fc_sizes=[8]", "--help-config")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "[8]" in lines["hyper_parameters.fc_sizes"] and "required" in lines["hyper_parameters.fc_sizes"]
    assert re.search(r">= 0\s+2021\s+2021\s+seeds", lines["runner.seed"])  # expected, default, value, help
    assert "hyper_parameters.sparse_feature_number" in lines  # the data set's keys (criteo) too


def test_a_model_gives_shared_keys_its_own_default_and_drops_the_ones_it_does_not_read():
    from models.common.matching_model import MatchingDygraphModel
    from tests.conftest import REPO, model_config

    youtube = os.path.join(REPO, "models", "recall", "youtube_dnn", "config.yaml")
    config = model_config(youtube, ["hyper_parameters.user_fc_sizes=[16]"])
    assert config.get("hyper_parameters.temperature") == 0.5  # the file's value
    spec = MatchingDygraphModel.model_spec()
    assert spec["hyper_parameters.mode"].default == "point"  # the shared default stays
    with pytest.raises(ConfigError, match="item_fc_sizes: no such key"):  # YoutubeDNN has no item MLP
        model_config(youtube, ["hyper_parameters.item_fc_sizes=[16]"])

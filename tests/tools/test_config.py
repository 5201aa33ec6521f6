"""Config loading, overrides, validation and path resolution."""
import os

import pytest

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


def test_open_section_accepts_new_keys(config_file):
    config = load_config(config_file, ["hyper_parameters.optimizer.beta1=0.8"],
                         open_sections=["hyper_parameters.optimizer"])
    assert config.get("hyper_parameters.optimizer.beta1") == 0.8
    with pytest.raises(ConfigError):
        load_config(config_file, ["hyper_parameters.other=1"], open_sections=["hyper_parameters.optimizer"])


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
    with pytest.raises(ConfigError, match="hyper_parameters.sparse_feature_number"):
        load_config(str(path), ["runner.epochs=1"], required=["hyper_parameters.sparse_feature_number"])


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

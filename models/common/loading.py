"""Loading a model folder's modules and the reader a config names.

A model folder is a Python package (``models/rank/deepfm`` is ``models.rank.deepfm``) whose modules
import their siblings relatively (``from .net import DeepFMLayer``). A folder outside the
repository (a user's copy of a model) is imported as a package of its own, named after its path,
so relative imports work there too. Nothing is added to ``sys.path`` and no module is evicted: any
number of model folders load side by side in one process.

``runner.train_reader_path`` / ``runner.infer_reader_path`` name the reader: a bare name is a
module of the config's folder (``criteo_reader`` -> ``criteo_reader.py``, PaddleRec's habit) or,
when the folder has none, a public data set of ``models/common/datasets`` (``criteo``,
``movielens``); a path (``dir/reader.py``) is a file. The module holds ``RecDataset(file_list, config)``.
"""
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys

from models.common.spec import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASETS = os.path.join(REPO_ROOT, "models", "common", "datasets")
READER_KEYS = {"train": "runner.train_reader_path", "infer": "runner.infer_reader_path"}


def _package(folder):
    """The dotted package name of ``folder``, importing it if it lives outside the repository."""
    relative = os.path.relpath(folder, REPO_ROOT)
    parts = relative.split(os.sep)
    if not relative.startswith("..") and all(part.isidentifier() for part in parts):
        return ".".join(parts)
    name = "_model_folder_" + hashlib.sha256(folder.encode()).hexdigest()[:16]
    if name not in sys.modules:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [folder]
        sys.modules[name] = importlib.util.module_from_spec(spec)
    return name


def load_module(path):
    """Import the Python file ``path`` (".py" optional) as a module of its folder's package."""
    if not path.endswith(".py"):
        path += ".py"
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"module file {path!r} does not exist")
    folder, stem = os.path.split(path[:-3])
    return importlib.import_module(f"{_package(folder)}.{stem}")


def load_dygraph_model(config_path):
    """The ``DygraphModel`` class of the model folder holding ``config_path``."""
    folder = os.path.dirname(os.path.abspath(config_path))
    if not os.path.isfile(os.path.join(folder, "dygraph_model.py")):
        raise FileNotFoundError(f"{config_path}: a config is read with the model folder it lies in, and {folder} has "
                                f"no dygraph_model.py (its reader and model paths are relative to it too): keep the "
                                f"config in its model folder (models/<area>/<model>/) or copy the whole folder")
    module = load_module(os.path.join(folder, "dygraph_model.py"))
    if not hasattr(module, "DygraphModel"):
        raise ConfigError(f"{module.__file__} does not define class DygraphModel")
    return module.DygraphModel


def is_module_name(value):
    """A reader value naming a module (``criteo``), not a file path (``dir/reader.py``)."""
    return isinstance(value, str) and "/" not in value and os.sep not in value and not value.endswith(".py")


def data_sets():
    """The public data sets of models/common/datasets, by module name."""
    return sorted(name[:-3] for name in os.listdir(DATASETS) if name.endswith(".py") and not name.startswith("_"))


def reader_key(config, mode="train"):
    """The key naming the reader of ``mode``: runner.infer_reader_path falls back to the train one."""
    key = READER_KEYS["train" if mode == "train" else "infer"]
    return key if config.get(key) else READER_KEYS["train"]


def reader_module(config, mode="train"):
    """The module the reader key of ``mode`` names."""
    key = reader_key(config, mode)
    value = config.get(key)
    if not value:
        raise FileNotFoundError(f"{key}: no reader is configured")
    if not is_module_name(value):
        try:
            return load_module(value)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{key}: {error}") from None
    local = os.path.join(config.folder, value + ".py")
    if os.path.isfile(local):
        return load_module(local)
    if value in data_sets():
        return importlib.import_module(f"models.common.datasets.{value}")
    raise FileNotFoundError(f"{key}: {value!r} is neither a module of the config's folder ({local} does not "
                            f"exist) nor a data set of models/common/datasets ({', '.join(data_sets())})")


def load_reader(config, mode="train"):
    """The ``RecDataset`` class of the reader the config names for ``mode``."""
    module = reader_module(config, mode)
    if not hasattr(module, "RecDataset"):
        raise ConfigError(f"{reader_key(config, mode)}: {module.__file__} does not define class RecDataset")
    return module.RecDataset


def reader_schema(config, mode="train"):
    """The declared features of the reader ``mode`` names (its ``RecDataset.schema(config)``)."""
    reader = load_reader(config, mode)
    if not hasattr(reader, "schema"):
        raise ConfigError(f"{reader_key(config, mode)}: {reader.__module__}.{reader.__name__} declares no "
                          f"schema(config)")
    return reader.schema(config)

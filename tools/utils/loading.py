"""Loading a model folder's modules (dygraph_model.py, readers) by file path.

A model folder imports its siblings by plain name (``from net import DeepFMLayer``, as in
PaddleRec), so the folder goes first on ``sys.path`` and sibling modules cached from another
model folder are dropped first: two models can be loaded in one process (tests, the demo).
"""
import importlib.util
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ensure_repo_on_path():
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


def load_module(path):
    """Import the Python file ``path`` (".py" optional) with its folder first on sys.path."""
    ensure_repo_on_path()
    if not path.endswith(".py"):
        path += ".py"
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"module file {path!r} does not exist")
    folder = os.path.dirname(path)
    for name in [n[:-3] for n in os.listdir(folder) if n.endswith(".py")]:
        cached = sys.modules.get(name)
        if cached is not None and os.path.dirname(os.path.abspath(getattr(cached, "__file__", "") or "")) != folder:
            del sys.modules[name]
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_dygraph_model(config_path):
    """The ``DygraphModel`` class of the model folder holding ``config_path``."""
    folder = os.path.dirname(os.path.abspath(config_path))
    module = load_module(os.path.join(folder, "dygraph_model.py"))
    if not hasattr(module, "DygraphModel"):
        raise AttributeError(f"{module.__file__} does not define class DygraphModel")
    return module.DygraphModel


def load_reader(config, mode):
    """The ``RecDataset`` class named by runner.train_reader_path / runner.infer_reader_path."""
    key = "runner.train_reader_path" if mode == "train" else "runner.infer_reader_path"
    path = config.get(key) or config.get("runner.train_reader_path")
    try:
        module = load_module(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{key}: {error}") from None
    if not hasattr(module, "RecDataset"):
        raise AttributeError(f"{key}: {module.__file__} does not define class RecDataset")
    return module.RecDataset

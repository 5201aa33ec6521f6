"""create_loader: the same batches in-process and with worker processes, for both reader kinds; loading
model folders as packages and the reader a config names."""
import os

import numpy as np
import paddle
import pytest

from models.common.data import ArrayDataset
from tools.utils.config import Config
from models.common.data.loader import create_loader


class PerSample(paddle.io.Dataset):
    """A reader without ``take``: the loader gathers and collates samples itself."""

    def __len__(self):
        return 23

    def __getitem__(self, index):
        return {"id": np.array([index], dtype="int64"), "x": np.full(3, index, dtype="float32")}


def config(workers):
    return Config({"runner": {"num_workers": workers, "train_batch_size": 5, "seed": 3, "shuffle": True}}, "x.yaml")


def batches(dataset, workers):
    return [{k: t.numpy() for k, t in batch.items()} for batch in create_loader(dataset, config(workers), "train", epoch=2)]


def test_same_batches_with_and_without_workers():
    columns = [np.arange(23).reshape(-1, 1), np.arange(69, dtype="float32").reshape(23, 3)]
    for dataset in (ArrayDataset(columns, ["id", "x"]), PerSample()):
        in_process, workers = batches(dataset, 0), batches(dataset, 2)
        assert len(in_process) == 5
        ids = np.concatenate([b["id"].reshape(-1) for b in in_process])
        assert sorted(ids.tolist()) == list(range(23)) and ids.tolist() != list(range(23))  # shuffled
        for a, b in zip(in_process, workers):
            assert set(a) == set(b) == {"id", "x"}
            for name in a:
                np.testing.assert_array_equal(a[name], b[name])


# ---- loading model folders and readers (models/common/loading.py) -------------------------------
def test_model_folders_are_packages_loaded_side_by_side(tmp_path):
    """Two folders with modules of the same names load in one process without sys.path edits;
    a copy outside the repository imports its siblings relatively too."""
    import shutil
    import sys

    from models.common.loading import load_dygraph_model, load_module
    from tests.conftest import REPO

    path = list(sys.path)
    deepfm = load_module(os.path.join(REPO, "models", "rank", "deepfm", "net.py"))
    dcn = load_module(os.path.join(REPO, "models", "rank", "dcn_v2", "net.py"))
    assert deepfm.__name__ == "models.rank.deepfm.net" and dcn.__name__ == "models.rank.dcn_v2.net"
    assert hasattr(deepfm, "DeepFMLayer") and hasattr(dcn, "DCNv2Layer")
    copy = tmp_path / "my model"
    shutil.copytree(os.path.join(REPO, "models", "rank", "dcn_v2"), copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "net.py").write_text((copy / "net.py").read_text() + "\nMARK = 'the copy'\n")
    model = load_dygraph_model(str(copy / "config.yaml"))
    assert sys.modules[model.__module__.rsplit(".", 1)[0] + ".net"].MARK == "the copy"
    assert load_module(os.path.join(REPO, "models", "rank", "dcn_v2", "net.py")) is dcn  # the original stays
    assert sys.path == path


def test_a_reader_is_a_module_of_the_folder_or_a_data_set(tmp_path):
    from models.common.loading import load_reader
    from tools.utils.config import ConfigError

    config = Config({"runner": {"train_reader_path": "criteo"}}, str(tmp_path / "config.yaml"))
    assert load_reader(config).__module__ == "models.common.datasets.criteo"
    (tmp_path / "criteo.py").write_text("class RecDataset:\n    pass\n")  # the folder's own module wins
    assert load_reader(config).__module__.endswith(".criteo") and load_reader(config).__module__ != \
        "models.common.datasets.criteo"
    config.set("runner.train_reader_path", "nonesuch")
    with pytest.raises(FileNotFoundError, match="'nonesuch' is neither a module of the config's folder.*aliccp, census"):
        load_reader(config)
    (tmp_path / "empty.py").write_text("")
    config.set("runner.train_reader_path", "empty")
    with pytest.raises(ConfigError, match="runner.train_reader_path: .*empty.py does not define class RecDataset"):
        load_reader(config)

"""create_loader: the same batches in-process and with worker processes, for both reader kinds."""
import numpy as np
import paddle

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

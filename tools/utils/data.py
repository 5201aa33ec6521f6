"""Building data loaders from a model's RecDataset: batching, shuffling and sharding.

A reader whose dataset has ``take(indices)`` (see models.common.data.ArrayDataset) gets whole
batches fetched by one fancy-index operation; the loader then only moves ready batches. Batches
are planned here, from (seed, epoch), so that a run is reproducible, resumable and - with worker
processes or several ranks - reads each sample exactly once.
"""
import math

import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

from models.common.data import list_data_files
from tools.utils.config import ConfigError


def plan_batches(num_rows, batch_size, epoch=0, seed=0, shuffle=False, rank=0, world_size=1):
    """Row indices of each batch this rank processes in ``epoch``.

    Rows are (optionally) permuted by a generator seeded from (seed, epoch), split into
    ``world_size`` contiguous shards whose sizes differ by at most one, and cut into batches of
    ``batch_size``. Every rank gets the same number of batches - data-parallel ranks must step
    together - so a rank whose shard would give one batch fewer spreads its rows evenly instead.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_rows) if shuffle else np.arange(num_rows)
    shard = np.array_split(order, world_size)[rank]
    num_batches = math.ceil(math.ceil(num_rows / world_size) / batch_size)
    batches = [shard[i:i + batch_size] for i in range(0, len(shard), batch_size)]
    if len(batches) < num_batches:
        batches = np.array_split(shard, num_batches)
    return batches


class _PlannedBatches(paddle.io.Dataset):
    """Item i is batch i of the plan: one ``dataset.take`` call when the reader has it, else
    the list of samples (collated by the loader)."""

    def __init__(self, dataset, batches):
        self.dataset = dataset
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        if hasattr(self.dataset, "take"):
            return self.dataset.take(self.batches[index])
        return [self.dataset[int(i)] for i in self.batches[index]]


class _InProcessLoader:
    """Iterates batches in the calling thread. Used for num_workers == 0 instead of paddle's
    DataLoader, whose buffer thread swallows a reader exception and then waits forever (the
    PaddleRec hang); here the exception propagates at once with its original traceback."""

    def __init__(self, items, collate=None):
        self.items = items
        self.collate = collate

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        for index in range(len(self.items)):
            item = self.items[index]
            yield _to_tensors(self.collate(item) if self.collate else item)


def _to_tensors(data):
    if isinstance(data, np.ndarray):
        return paddle.to_tensor(data)
    if isinstance(data, (list, tuple)):
        return [_to_tensors(d) for d in data]
    if isinstance(data, dict):
        return {k: _to_tensors(v) for k, v in data.items()}
    return data


def create_dataset(reader_class, config, mode):
    """Instantiate the reader on the files of runner.train_data_dir / runner.test_data_dir."""
    key = "runner.train_data_dir" if mode == "train" else "runner.test_data_dir"
    if not config.get(key):
        raise ConfigError(f"{config.path}: '{key}' is required to {mode}")
    return reader_class(list_data_files(config.get(key), key), config)


def create_loader(dataset, config, mode, epoch=0, rank=0, world_size=1):
    """A paddle DataLoader over ``dataset`` for one epoch (see module docstring)."""
    num_workers = config.get("runner.num_workers")
    if isinstance(dataset, paddle.io.IterableDataset) or getattr(dataset, "yields_batches", False):
        # The reader batches (and shards) itself, e.g. a task sampler for meta-learning.
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        if num_workers == 0 and not isinstance(dataset, paddle.io.IterableDataset):
            return _InProcessLoader(dataset)
        return paddle.io.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    batch_size = config.get(f"runner.{mode}_batch_size") or config.get("runner.train_batch_size")
    if mode == "train" and len(dataset) < batch_size:
        raise ConfigError(
            f"runner.train_batch_size is {batch_size} but the training data "
            f"({config.get('runner.train_data_dir')}) has only {len(dataset)} rows")
    if len(dataset) < world_size:
        raise ConfigError(f"{len(dataset)} rows cannot be shared by {world_size} ranks")
    batches = plan_batches(
        len(dataset), batch_size, epoch=epoch, seed=config.get("runner.seed"),
        shuffle=mode == "train" and config.get("runner.shuffle"), rank=rank, world_size=world_size)
    planned = _PlannedBatches(dataset, batches)
    collate = None if hasattr(dataset, "take") else default_collate_fn
    if num_workers == 0:
        return _InProcessLoader(planned, collate)
    return paddle.io.DataLoader(planned, batch_size=None, num_workers=num_workers, collate_fn=collate)

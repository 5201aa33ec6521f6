"""Data loaders over a model's RecDataset: batching, shuffling and sharding.

A reader whose dataset has ``take(indices)`` (see models.common.data.ArrayDataset) gets whole
batches fetched by one fancy-index operation; the loader then only moves ready batches. Batches
are planned here, from (seed, epoch), so that a run is reproducible, resumable and - with worker
processes or several ranks - reads each sample exactly once.
"""
import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

from models.common.data import list_data_files
from models.common.spec import ConfigError


def _ceil_div(a, b):
    return -(-a // b)


def _split_bounds(length, parts):
    """Boundaries of np.array_split(range(length), parts): the first length % parts parts get one more."""
    size, extra = divmod(length, parts)
    return np.array([i * size + min(i, extra) for i in range(parts + 1)], dtype=np.int64)


class _Sequential:
    def __call__(self, a, b):
        return np.arange(a, b, dtype=np.int64)


class _Permuted:
    """One global permutation of the rows, seeded by (seed, epoch): 8 bytes of memory per row."""

    def __init__(self, num_rows, seed, epoch):
        self.order = np.random.default_rng([seed, epoch]).permutation(num_rows)

    def __call__(self, a, b):
        return self.order[a:b]


class _BlockShuffled:
    """Blocks of ``block_rows`` contiguous rows in a seeded random order; rows shuffled within
    each window of ``window_blocks`` consecutive blocks of that order. Reading an epoch touches
    one window at a time: mostly sequential reads of the cache, memory of one window's indices."""

    def __init__(self, num_rows, seed, epoch, block_rows, window_blocks):
        self.seed, self.epoch, self.block_rows = seed, epoch, block_rows
        num_blocks = _ceil_div(num_rows, block_rows)
        self.blocks = np.random.default_rng([seed, epoch]).permutation(num_blocks)
        sizes = np.minimum(block_rows, num_rows - self.blocks * block_rows)
        self.windows = [self.blocks[i:i + window_blocks] for i in range(0, num_blocks, window_blocks)]
        window_sizes = [int(sizes[i:i + window_blocks].sum()) for i in range(0, num_blocks, window_blocks)]
        self.window_starts = np.concatenate([[0], np.cumsum(window_sizes)]).astype(np.int64)
        self.num_rows = num_rows
        self._cached = (None, None)

    def _window(self, w):
        if self._cached[0] != w:
            rows = np.concatenate([np.arange(b * self.block_rows, min((b + 1) * self.block_rows, self.num_rows))
                                   for b in self.windows[w]])
            self._cached = (w, rows[np.random.default_rng([self.seed, self.epoch, w]).permutation(len(rows))])
        return self._cached[1]

    def __call__(self, a, b):
        first = int(np.searchsorted(self.window_starts, a, side="right")) - 1
        last = int(np.searchsorted(self.window_starts, b, side="left"))
        parts = []
        for w in range(first, last):
            start = self.window_starts[w]
            parts.append(self._window(w)[max(a - start, 0):b - start])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class BatchPlan:
    """Row indices of each batch one rank processes in one epoch, computed on demand.

    The epoch's row order (sequential, a global permutation, or block-shuffled; all seeded by
    (seed, epoch)) is split into ``world_size`` contiguous shards whose sizes differ by at most
    one, and each shard into batches of ``batch_size``. Every rank gets the same number of batches
    - data-parallel ranks must step together - so a rank whose shard would give one batch fewer
    spreads its rows evenly instead.
    """

    def __init__(self, order, num_rows, batch_size, rank, world_size):
        self.order = order
        shard = _split_bounds(num_rows, world_size)
        self.start, length = int(shard[rank]), int(shard[rank + 1] - shard[rank])
        self.num_batches = _ceil_div(_ceil_div(num_rows, world_size), batch_size)
        if _ceil_div(length, batch_size) == self.num_batches:
            self.bounds = np.minimum(np.arange(self.num_batches + 1, dtype=np.int64) * batch_size, length)
        else:
            self.bounds = _split_bounds(length, self.num_batches)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        if not 0 <= index < self.num_batches:
            raise IndexError(index)
        return self.order(self.start + int(self.bounds[index]), self.start + int(self.bounds[index + 1]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def plan_batches(num_rows, batch_size, epoch=0, seed=0, shuffle=False, rank=0, world_size=1,
                 block_rows=65536, window_blocks=8):
    """The BatchPlan of one epoch; ``shuffle`` is False, True (global permutation) or 'block'."""
    if shuffle == "block":
        order = _BlockShuffled(num_rows, seed, epoch, block_rows, window_blocks)
    elif shuffle:
        order = _Permuted(num_rows, seed, epoch)
    else:
        order = _Sequential()
    return BatchPlan(order, num_rows, batch_size, rank, world_size)


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
            yield to_tensors(self.collate(item) if self.collate else item)


def to_tensors(data, rows=None):
    """Arrays -> paddle tensors, inside lists and dicts too (anything else stays as it is);
    ``rows`` first takes those rows of every array of the dict ``data``."""
    if rows is not None:
        data = {k: v[rows] for k, v in data.items()}
    if isinstance(data, np.ndarray):
        return paddle.to_tensor(np.require(data, requirements="C"))  # views of a batch block are strided
    if isinstance(data, (list, tuple)):
        return [to_tensors(d) for d in data]
    if isinstance(data, dict):
        return {k: to_tensors(v) for k, v in data.items()}
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
    if len(dataset) == 0:
        raise ConfigError(f"runner.{'train' if mode == 'train' else 'test'}_data_dir: the data holds no rows")
    if mode == "train" and len(dataset) < batch_size:
        raise ConfigError(
            f"runner.train_batch_size is {batch_size} but the training data "
            f"({config.get('runner.train_data_dir')}) has only {len(dataset)} rows")
    if len(dataset) < world_size:
        raise ConfigError(f"{len(dataset)} rows cannot be shared by {world_size} ranks")
    shuffle = config.get("runner.shuffle")
    batches = plan_batches(
        len(dataset), batch_size, epoch=epoch, seed=config.get("runner.seed"),
        shuffle=shuffle if mode == "train" else False, rank=rank, world_size=world_size,
        block_rows=config.get("runner.shuffle_block_rows"), window_blocks=config.get("runner.shuffle_window_blocks"))
    planned = _PlannedBatches(dataset, batches)
    collate = None if hasattr(dataset, "take") else default_collate_fn
    if num_workers == 0:
        return _InProcessLoader(planned, collate)
    return paddle.io.DataLoader(planned, batch_size=None, num_workers=num_workers, collate_fn=collate)

"""Meta-training task sampler: item i of an epoch is one meta-batch of ``task_count`` tasks.

The ``task_count`` tasks (ads) of a meta-batch are distinct: drawn one after another without
replacement, each with probability proportional to its number of rows among the tasks not drawn
yet (as the official code: ``np.random.choice(aids, task_count, replace=False, p=rows / total)``;
only if the data has fewer than ``task_count`` tasks are they drawn with replacement).
A support and a query set of ``batch_size`` rows each are drawn from the task's rows,
independently (they may overlap, as in the official code). A task with fewer than
``batch_size`` rows is drawn with replacement and counted (``replaced`` in the batch).

The rows live in the columnar cache (models.common.data); only the task grouping (an index
per row) is held in memory. A meta-batch is ``{"support": batch, "query": batch, "replaced": n}``
where each batch is ``{column: array [task_count, batch_size, ...]}``. Randomness comes from a
generator seeded with (runner.seed, epoch, i): the same run gives the same batches, whatever
runner.num_workers.
"""
import numpy as np
import paddle

from models.common.datasets.lookalike import CONFIG_SPEC, LookalikeParser, data_files, schema
from models.common.data import CachedDataset, DataFormatError


class RecDataset(paddle.io.Dataset):
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)
    yields_batches = True  # the loader passes our meta-batches through unchanged

    def __init__(self, file_list, config):
        super().__init__()
        files = data_files(file_list)
        if not files:
            raise DataFormatError(f"runner.train_data_dir: no .npz/.pkl files among {file_list}")
        self.rows = CachedDataset(files, config, schema(config), LookalikeParser())
        self.task_count = config.get("hyper_parameters.task_count")
        self.batch_size = config.get("hyper_parameters.batch_size")
        self.seed = config.get("runner.seed")
        self.epoch = 0
        # Group rows by task once: task t owns self.order[starts[t]:starts[t] + counts[t]].
        aid = self.rows.column("aid")
        self.order = np.argsort(aid, kind="stable")
        self.tasks, self.starts, self.counts = np.unique(aid[self.order], return_index=True, return_counts=True)
        self.probs = self.counts / self.counts.sum()
        # Fewer tasks than task_count (tiny data only): tasks are drawn with replacement instead.
        self.distinct_tasks = self.task_count <= len(self.tasks)
        if not self.distinct_tasks:
            print(f"reader_train: task_count={self.task_count} but only {len(self.tasks)} task(s): the tasks of "
                  f"a meta-batch are drawn with replacement", flush=True)
        self.small_tasks = int((self.counts < self.batch_size).sum())
        if self.small_tasks:
            print(f"reader_train: {self.small_tasks} of {len(self.tasks)} tasks have fewer than "
                  f"batch_size={self.batch_size} rows; they are sampled with replacement", flush=True)
        # As the official code: one epoch = ceil(rows / batch_size) meta-steps.
        self.steps = int(np.ceil(len(self.rows) / self.batch_size))

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.steps

    def _draw(self, rng, task):
        count = self.counts[task]
        replace = count < self.batch_size
        return self.order[self.starts[task] + rng.choice(count, self.batch_size, replace=replace)], replace

    def _take(self, index_sets):
        """[task_count, batch_size] row indices -> {column: [task_count, batch_size, ...]}."""
        batch = self.rows.take(index_sets.reshape(-1))
        return {k: v.reshape(index_sets.shape + v.shape[1:]) for k, v in batch.items()}

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        tasks = rng.choice(len(self.tasks), size=self.task_count, replace=not self.distinct_tasks, p=self.probs)
        support, query, replaced = [], [], 0
        for task in tasks:
            s, r = self._draw(rng, task)
            q, _ = self._draw(rng, task)
            support.append(s)
            query.append(q)
            replaced += int(r)
        return {"support": self._take(np.stack(support)), "query": self._take(np.stack(query)),
                "replaced": np.array(replaced, dtype=np.int64)}

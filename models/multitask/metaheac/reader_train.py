"""Meta-training task sampler: item i of an epoch is one meta-batch of ``task_count`` tasks.

Each task (ad) is drawn with probability proportional to its number of rows (as the official
code); a support and a query set of ``batch_size`` rows each are drawn from the task's rows,
independently (they may overlap, as in the official code). A task with fewer than
``batch_size`` rows is drawn with replacement and counted (``replaced`` in the batch).

Rows are grouped by task once at start-up; a meta-batch is a handful of fancy-index operations.
Randomness comes from a generator seeded with (runner.seed, epoch, i): the same run gives the same
batches, whatever runner.num_workers.
"""

import numpy as np
import paddle

from lookalike_data import data_files, load_rows
from models.common.data import DataFormatError



class RecDataset(paddle.io.Dataset):
    yields_batches = True  # the loader passes our meta-batches through unchanged

    def __init__(self, file_list, config):
        super().__init__()
        files = data_files(file_list)
        if not files:
            raise DataFormatError(f"runner.train_data_dir: no .npz/.pkl files among {file_list}")
        self.rows = load_rows(files, config.get("hyper_parameters.max_idxs"))
        self.task_count = config.get("hyper_parameters.task_count")
        self.batch_size = config.get("hyper_parameters.batch_size")
        self.seed = config.get("runner.seed")
        self.epoch = 0
        # Group rows by task once: task t owns self.order[starts[t]:starts[t] + counts[t]].
        self.order = np.argsort(self.rows.aid, kind="stable")
        self.tasks, self.starts, self.counts = np.unique(self.rows.aid[self.order], return_index=True,
                                                         return_counts=True)
        self.probs = self.counts / self.counts.sum()
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

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        tasks = rng.choice(len(self.tasks), size=self.task_count, replace=True, p=self.probs)
        support, query, replaced = [], [], 0
        for task in tasks:
            s, r = self._draw(rng, task)
            q, _ = self._draw(rng, task)
            support.append(s)
            query.append(q)
            replaced += int(r)
        out = []
        for index_sets in (np.stack(support), np.stack(query)):  # [task_count, batch_size]
            part = self.rows.take(index_sets)
            out += [part.ids, part.lengths, part.label]
        return out + [np.array(replaced, dtype=np.int64)]

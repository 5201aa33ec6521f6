"""Test tasks for infer_meta.py: item i is one test task (ad), in ascending aid order, with its
stage-1 rows (seed users with labels: fine-tuning) and stage-2 rows (candidates with labels:
testing), each a batch dict ``{column: array}``. The folder holds *stage1* and *stage2* files
(.npz or trusted .pkl), read through the columnar cache."""
import os

import numpy as np
import paddle

from models.common.datasets.lookalike import CONFIG_SPEC, LookalikeParser, data_files, schema, split_stages
from models.common.data import CachedDataset, DataFormatError


class Task:
    def __init__(self, aid, stage1, stage2):
        self.aid, self.stage1, self.stage2 = int(aid), stage1, stage2


def _by_task(dataset):
    """{aid: batch dict} grouping rows once (stable: file order kept within a task)."""
    aid = dataset.column("aid")
    order = np.argsort(aid, kind="stable")
    aids, starts = np.unique(aid[order], return_index=True)
    ends = np.r_[starts[1:], len(order)]
    return {int(a): dataset.take(order[s:e]) for a, s, e in zip(aids, starts, ends)}


class RecDataset(paddle.io.Dataset):
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)
    def __init__(self, file_list, config):
        super().__init__()
        files = data_files(file_list)
        folder = os.path.dirname(file_list[0]) if file_list else "?"
        stage1_files, stage2_files = split_stages(files, folder)
        declared, parser = schema(config), LookalikeParser()
        stage1 = _by_task(CachedDataset(stage1_files, config, declared, parser))
        stage2 = _by_task(CachedDataset(stage2_files, config, declared, parser))
        missing = sorted(set(stage2) - set(stage1))
        if missing:
            raise DataFormatError(f"{folder}: task(s) {missing[:5]} have stage-2 rows but no stage-1 (seed) rows")
        # Tasks without candidates cannot be evaluated: left out (the caller reports the count).
        self.without_candidates = sorted(set(stage1) - set(stage2))
        self.tasks = [Task(a, stage1[a], stage2[a]) for a in sorted(stage2)]

    def __len__(self):
        return len(self.tasks)

    def __getitem__(self, index):
        return self.tasks[index]

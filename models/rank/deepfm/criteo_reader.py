"""Reader for PaddleRec's Criteo slot format:
``click:<0|1> dense_feature:<x> (13 times) 1:<id> ... 26:<id>``, one sample per line.

Files are parsed in bulk (see models.common.data.read_slot_file); batches are fancy-indexed
slices of the resulting arrays: [click int64 (n, 1), sparse ids int64 (n, 26), dense float32 (n, 13)].
"""
import numpy as np

from models.common.data import ArrayDataset, DataFormatError, read_slot_file

NUM_DENSE = 13
NUM_SPARSE = 26
SLOTS = [("click", int)] + [("dense_feature", float)] * NUM_DENSE + [(str(i), int) for i in range(1, NUM_SPARSE + 1)]


class RecDataset(ArrayDataset):
    def __init__(self, file_list, config):
        skip = config.get("runner.skip_bad_lines", False)
        num_ids = config.get("hyper_parameters.sparse_feature_number")
        parts, skipped = [], 0
        for path in file_list:
            arrays, bad = read_slot_file(path, SLOTS, skip_bad_lines=skip)
            ids = np.stack(arrays[1 + NUM_DENSE:], axis=1) if len(arrays[0]) else np.zeros((0, 1), np.int64)
            out_of_range = np.flatnonzero(((ids < 0) | (ids >= num_ids)).any(axis=1))
            if len(out_of_range):
                row = out_of_range[0]
                raise DataFormatError(
                    f"{path}, sample {row + 1}: sparse id {ids[row].max()} is outside "
                    f"[0, hyper_parameters.sparse_feature_number={num_ids})")
            parts.append(arrays)
            skipped += bad
        label = np.concatenate([p[0] for p in parts]).reshape(-1, 1)
        dense = np.stack([np.concatenate([p[1 + i] for p in parts]) for i in range(NUM_DENSE)], axis=1)
        sparse = np.stack([np.concatenate([p[1 + NUM_DENSE + i] for p in parts]) for i in range(NUM_SPARSE)], axis=1)
        super().__init__([label, sparse, dense], ["click", "sparse_ids", "dense_values"])
        self.skipped_lines = skipped

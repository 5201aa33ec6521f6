"""The PaddleRec-style input pipelines benchmarks/benchmark.py --baseline compares ours with: PaddleRec's
line-by-line readers re-implemented step for step (slot format; Ali-CCP field:id lists), and
adapters that give their samples the batch layout of our readers."""
import numpy as np
import paddle



class LineByLineSlotDataset(paddle.io.IterableDataset):
    """PaddleRec's slot-format reader, step for step (PaddleRec's models/rank/*/criteo_reader.py):
    read each file line by line; split the line on spaces and every token on ':'; look the
    slot name up in the list of slots and of sparse slots (Python list membership); append
    int() or float() of the value to that slot's list and mark the slot visited; pad every
    unvisited slot; convert each slot's list with np.array(...).astype(...); yield the sample
    (one array per distinct slot name, in order of first appearance) for paddle's DataLoader
    to collate sample by sample.
    """

    def __init__(self, file_list, slots, padding=0):
        super().__init__()
        self.file_list = list(file_list)
        self.names, self.kinds, self.widths = [], {}, {}
        for name, kind in slots:
            if name not in self.kinds:
                self.names.append(name)
                self.kinds[name] = kind
                self.widths[name] = 0
            self.widths[name] += 1
        self.sparse_names = [n for n in self.names if self.kinds[n] is int]
        self.padding = padding

    def __iter__(self):
        names, sparse_names, widths, padding = self.names, self.sparse_names, self.widths, self.padding
        index = {name: i for i, name in enumerate(names)}
        visited = {name: False for name in names}
        for path in self.file_list:
            with open(path, "r") as f:
                for line in f:
                    tokens = line.strip().split(" ")
                    if tokens == [""]:
                        continue
                    values = [(name, []) for name in names]
                    for token in tokens:
                        pair = token.split(":")
                        name = pair[0]
                        if name not in names:
                            continue
                        value = int(pair[1]) if name in sparse_names else float(pair[1])
                        values[index[name]][1].append(value)
                        visited[name] = True
                    for name in visited:
                        if not visited[name]:
                            values[index[name]][1].extend([padding] * widths[name])
                        else:
                            visited[name] = False
                    yield [np.array(v).astype("int64" if name in sparse_names else "float32") for name, v in values]


class LineByLineAliCCPDataset(paddle.io.IterableDataset):
    """PaddleRec's dygraph ESMM reader (PaddleRec's models/multitask/esmm/esmm_reader.py), step for
    step: read each line, split on ',', take click and purchase from columns 1 and 2, loop over
    ``features[4:]`` (PaddleRec drops the first pair; kept here so that both pipelines see the
    same ids) splitting each pair on ':' and appending int(id) to its field's list (dict
    lookup), then cut or pad every field's list to ``max_len`` with 0, np.array(...).astype
    each, yield the 23 field arrays + [click] + [purchase] for paddle's DataLoader to collate
    sample by sample. ``max_len``: one width for every field (PaddleRec's config key; its
    default 3 keeps 3 ids a field - here the largest of our per-field bounds, so nothing is cut)."""

    def __init__(self, file_list, fields, labels, max_len):
        super().__init__()
        self.file_list, self.fields, self.labels, self.max_len = list(file_list), list(fields), list(labels), max_len
        self.names = self.fields + self.labels

    def __iter__(self):
        field_index = {f: [False, i] for i, f in enumerate(self.fields)}
        padding, max_len = 0, self.max_len
        for path in self.file_list:
            with open(path, "r") as f:
                for line in f:
                    features = line.strip().split(",")
                    if features == [""]:
                        continue
                    click, buy = int(features[1]), int(features[2])
                    output = [(field, []) for field in self.fields]
                    for elem in features[3:]:
                        field, feat = elem.strip().split(":")
                        if field not in field_index:
                            continue
                        field_index[field][0] = True
                        output[field_index[field][1]][1].append(int(feat))
                    arrays = []
                    for field in self.fields:
                        field_index[field][0] = False
                        ids = output[field_index[field][1]][1]
                        if len(ids) > max_len:
                            arrays.append(np.array(ids[:max_len]).astype("int64"))
                        else:
                            ids.extend([padding] * (max_len - len(ids)))
                            arrays.append(np.array(ids).astype("int64"))
                    arrays.append(np.array([click]).astype("int64"))
                    arrays.append(np.array([buy]).astype("int64"))
                    yield arrays


class AliCCPBatchAdapter:
    """A collated batch of LineByLineAliCCPDataset -> our reader's batch dict: each field's ids
    cut to its own ``max_len`` and its length = the non-padding ids (PaddleRec's ids start at 1)."""

    def __init__(self, dataset, reference):
        self.error, self.plan = None, []
        for i, field in enumerate(dataset.fields):
            if field not in reference or f"{field}_length" not in reference:
                self.error = f"column {field!r} of the line-by-line reader is no sequence column of ours"
                return
            self.plan.append((field, i, np.asarray(reference[field]).shape[1]))
        self.labels = [(label, len(dataset.fields) + j, str(np.asarray(reference[label]).dtype))
                       for j, label in enumerate(dataset.labels)]

    def __call__(self, batch):
        out = {}
        for field, i, width in self.plan:
            ids = batch[i][:, :width]
            out[field] = ids
            out[f"{field}_length"] = (ids != 0).astype("int64").sum(axis=1)
        for label, i, dtype in self.labels:
            out[label] = batch[i].reshape([-1]).astype(dtype)
        return out


def paddlerec_line_reader(module, file_list, reference):
    """(dataset, adapter) of the PaddleRec-style line-by-line pipeline for a reader module that
    declares ``PADDLEREC_FORMAT`` ("aliccp"), or None."""
    if getattr(module, "PADDLEREC_FORMAT", None) != "aliccp":
        return None
    fields, labels = module.FIELDS, module.LABELS
    max_len = max(int(np.asarray(reference[f]).shape[1]) for f in fields)
    dataset = LineByLineAliCCPDataset(file_list, fields, labels, max_len)
    return dataset, AliCCPBatchAdapter(dataset, reference)


class BatchAdapter:
    """Turn a collated PaddleRec-style batch (one tensor [B, width] per slot name) into the batch
    dict our reader produces for the same rows, so the same DygraphModel can train on it: each
    column of ``reference`` (a batch of our reader) takes the slot of the same name, reshaped and
    cast like it. ``error`` says why, if some column has no such slot (the baseline is skipped)."""

    def __init__(self, dataset, reference):
        self.plan, self.error = [], None
        for name, array in reference.items():
            array = np.asarray(array)
            if name not in dataset.names:
                self.error = f"column {name!r} of the reader's batches is no slot of the line-by-line reader"
                return
            width = int(np.prod(array.shape[1:])) if array.ndim > 1 else 1
            if dataset.widths[name] != width:
                self.error = f"column {name!r} has width {width}, slot {name!r} has {dataset.widths[name]}"
                return
            self.plan.append((name, dataset.names.index(name), tuple(array.shape[1:]), str(array.dtype)))

    def __call__(self, batch):
        return {name: batch[i].reshape([-1, *shape]).astype(dtype) for name, i, shape, dtype in self.plan}


def batches_equal(ours, theirs):
    """Whether two batch dicts hold the same values (floats to 1e-6)."""
    if set(ours) != set(theirs):
        return False
    for name in ours:
        a, b = ours[name], theirs[name]
        a = a.numpy() if hasattr(a, "numpy") else np.asarray(a)
        b = b.numpy() if hasattr(b, "numpy") else np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            if not np.allclose(a, b, rtol=1e-6, atol=1e-7):
                return False
        elif not np.array_equal(a, b):
            return False
    return True



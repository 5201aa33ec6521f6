"""Inference exports: a trained model as Paddle inference graphs plus what a server needs to feed
them (tools/export.py writes them, tools/serve.py serves them).

A model names the functions it serves (``DygraphModel.serving_graphs``): a ranking or multi-task
model its network (rows of features -> a score per task), a two-tower model its user tower and its
item tower. Each becomes a ``paddle.jit.save`` graph whose inputs are the declared features it
reads - found by running it once on sample rows and recording which columns it takes - named and
typed as the schema declares them (ids int64 [n], padded sequences int64 [n, max_len] with their
``<name>_length``, dense values float32 [n] or [n, dim]). A two-tower export also holds the item
catalog: every item's vector, its ids, and a faiss inner-product index over them.

The folder's manifest.json gets a ``serving`` section: per graph its file, inputs (name, dtype,
shape, vocabulary size / max_len) and outputs; the catalog; the model, its config digest and
epoch. Before the folder is published, a Paddle Inference predictor runs every graph on the sample
rows and must give the dygraph outputs within ``PARITY``: an export that would serve other numbers
is never written.
"""
import logging
import os
import threading

import numpy as np
import paddle
import paddle.nn as nn

from models.common.artifacts import save_npz
from models.common.features import DenseFeature, GroupKey, Label, SequenceFeature, SparseFeature

PARITY = 1e-5  # largest |predictor - dygraph| accepted, per output value
CATALOG = "catalog"
TABLES = "tables"


class Served(nn.Layer):
    """One served function of a batch dict: ``network.<method>(batch)``, its outputs as a list, named
    ``names`` (a network returning a dict {task: score} names them ``pred_<task>``, as the
    prediction files of tools/infer.py do)."""

    def __init__(self, network, method="forward", names=None):
        super().__init__()
        self.network, self.method, self.names = network, method, list(names or [])

    def forward(self, batch):
        out = getattr(self.network, self.method)(batch)
        if isinstance(out, dict):
            if not self.names:
                self.names = [f"pred_{task}" for task in out]
            return [out[name[len("pred_"):]] for name in self.names]
        return [out]


class _Recorder(dict):
    """A batch that remembers which columns were read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = []

    def __getitem__(self, name):
        if name not in self.read:
            self.read.append(name)
        return super().__getitem__(name)


def column_specs(schema):
    """{column: description} of every input column the schema declares (labels are no input)."""
    specs = {}
    for f in schema.features:
        if isinstance(f, SequenceFeature):
            specs[f.name] = {"kind": "sequence", "dtype": "int64", "shape": [-1, f.max_len], "vocab_size": f.vocab_size,
                             "max_len": f.max_len, "length": f.length_name}
            specs[f.length_name] = {"kind": "length", "dtype": "int64", "shape": [-1], "of": f.name}
        elif isinstance(f, SparseFeature):
            specs[f.name] = {"kind": "sparse", "dtype": "int64", "shape": [-1], "vocab_size": f.vocab_size}
        elif isinstance(f, GroupKey):
            specs[f.name] = {"kind": "key", "dtype": "int64", "shape": [-1]}
        elif isinstance(f, DenseFeature):
            specs[f.name] = {"kind": "dense", "dtype": "float32", "shape": [-1] if f.dim == 1 else [-1, f.dim]}
        elif not isinstance(f, Label):
            raise TypeError(f"feature {f.name}: no input spec for {type(f).__name__}")
    return specs


def as_arrays(batch, specs):
    """The columns ``specs`` names, as contiguous arrays of their declared dtype."""
    return {name: np.ascontiguousarray(batch[name], dtype=spec["dtype"]) for name, spec in specs.items()}


def trace(served, batch, specs):
    """Run ``served`` eagerly on ``batch`` (numpy columns): -> (the input specs of the columns it
    read, in reading order, and its outputs as arrays)."""
    recorder = _Recorder({name: paddle.to_tensor(array) for name, array in as_arrays(batch, specs).items()})
    with paddle.no_grad():
        outputs = served(recorder)
    inputs = {}
    for name in recorder.read:
        inputs[name] = specs[name]
        if specs[name]["kind"] == "sequence":  # its length travels with it
            inputs[specs[name]["length"]] = specs[specs[name]["length"]]
    return inputs, [o.numpy() for o in outputs]


def save_graph(served, path, inputs):
    spec = {name: paddle.static.InputSpec(s["shape"], s["dtype"], name) for name, s in inputs.items()}
    paddle.jit.save(served, path, input_spec=[spec])


def create_predictor(prefix, threads=1, gpu=False):
    """A Paddle Inference predictor of the graph saved at ``prefix`` (.json + .pdiparams)."""
    config = paddle.inference.Config(prefix + ".json", prefix + ".pdiparams")
    if gpu:
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        # oneDNN kernels: measured 8x slower on MetaEmb's 100-row rank graph (5.6 against 0.67 ms)
        config.disable_mkldnn()
    config.disable_glog_info()
    return paddle.inference.create_predictor(config)


class Graph:
    """A served graph of an export: its predictor and what it takes and gives (the manifest's
    entry). Not thread-safe: callers hold ``lock`` around ``run``."""

    def __init__(self, folder, entry, threads=1, gpu=False):
        self.entry, self.inputs, self.outputs = entry, entry["inputs"], entry["outputs"]
        self.predictor = create_predictor(os.path.join(folder, entry["file"]), threads, gpu)
        self.lock = threading.Lock()

    def run(self, columns):
        """{input name: array} -> {output name: array}."""
        for name in self.predictor.get_input_names():
            self.predictor.get_input_handle(name).copy_from_cpu(
                np.ascontiguousarray(columns[name], dtype=self.inputs[name]["dtype"]))
        self.predictor.run()
        values = [self.predictor.get_output_handle(n).copy_to_cpu() for n in self.predictor.get_output_names()]
        return dict(zip(self.outputs, values))


def export(dygraph_model, model, config, rows, folder, log=print, sample_rows=256, onnx=False):
    """Save every graph of ``dygraph_model.serving_graphs`` into ``folder`` (an artifact's staging
    folder), each checked against a predictor on the first ``sample_rows`` of ``rows`` (the
    training rows), then the catalog of a two-tower model and the feature tables a model declares.
    -> the manifest's ``serving`` section."""
    model.eval()
    specs = column_specs(dygraph_model.schema(config))
    sample = rows.take(np.arange(min(sample_rows, len(rows))))
    sample = {name: sample[name] for name in specs if name in sample}
    graphs = {}
    for name, served in dygraph_model.serving_graphs(model, config).items():
        inputs, expected = trace(served, sample, specs)
        save_graph(served, os.path.join(folder, name), inputs)
        entry = {"file": name, "inputs": inputs, "outputs": list(served.names) or [name]}
        got = Graph(folder, entry).run(as_arrays(sample, inputs))
        worst = max(float(np.abs(got[n].reshape(-1) - e.reshape(-1)).max(initial=0.0))
                    for n, e in zip(entry["outputs"], expected))
        if not worst <= PARITY:
            raise RuntimeError(f"export of {name}: the inference predictor differs from the model by {worst:.3g} "
                               f"(> {PARITY}) on the sample rows; nothing was written")
        entry["parity_max_abs_diff"] = worst
        if onnx:
            entry["onnx"] = export_onnx(folder, entry, sample, log)
        graphs[name] = entry
        log(f"{name}: inputs {', '.join(inputs)} -> {', '.join(entry['outputs'])} (predictor within {worst:.2g})")
    serving = {"model": dygraph_model.model_name(), "graphs": graphs}
    catalog = dygraph_model.serving_catalog(model, config)
    if catalog is not None:
        serving[CATALOG] = write_catalog(graphs["item_tower"], catalog, folder, log)
    tables = dygraph_model.serving_tables(config)
    if tables:
        serving[TABLES] = {name: write_table(name, key, names, rows, specs, folder, log)
                           for name, (key, names) in tables.items()}
    return serving


def check_onnx_available():
    """None, or why ONNX export cannot run here (paddle2onnx and onnxruntime are optional)."""
    import importlib.util

    missing = [m for m in ("paddle2onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    return f"ONNX export needs {' and '.join(missing)} (pip install paddle2onnx onnxruntime)" if missing else None


def export_onnx(folder, entry, sample, log, opset=16):
    """``<graph>.onnx`` from the saved graph (paddle2onnx, in a subprocess: an op it cannot convert
    aborts the process), checked with onnxruntime against the Paddle predictor on ``sample``.
    -> its manifest entry."""
    import subprocess
    import sys

    prefix, target = os.path.join(folder, entry["file"]), os.path.join(folder, entry["file"] + ".onnx")
    script = (f"import paddle2onnx; paddle2onnx.export({prefix + '.json'!r}, {prefix + '.pdiparams'!r}, {target!r}, "
              f"opset_version={opset}, enable_onnx_checker=True)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode or not os.path.isfile(target):
        reason = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line or "rror:" in line]
        raise RuntimeError(f"export of {entry['file']}: paddle2onnx cannot convert it "
                           f"({(reason or ['exit status %d' % done.returncode])[0].strip()}); nothing was written")
    import onnxruntime

    session = onnxruntime.InferenceSession(target, providers=["CPUExecutionProvider"])
    columns = as_arrays(sample, entry["inputs"])
    got = session.run(None, {i.name: columns[i.name] for i in session.get_inputs()})
    expected = Graph(folder, entry).run(columns)
    worst = max(float(np.abs(g.reshape(-1) - expected[n].reshape(-1)).max(initial=0.0))
                for g, n in zip(got, entry["outputs"]))
    if not worst <= PARITY:
        raise RuntimeError(f"export of {entry['file']}: onnxruntime differs from the Paddle predictor by {worst:.3g} "
                           f"(> {PARITY}) on the sample rows; nothing was written")
    log(f"{entry['file']}.onnx: onnxruntime within {worst:.2g} of the predictor (opset {opset})")
    return {"file": entry["file"] + ".onnx", "opset": opset, "parity_max_abs_diff": worst}


def write_table(name, key, names, rows, specs, folder, log):
    """The features ``names`` of every value of ``key`` in the training rows (its first row), as
    ``tables/<name>.npz``: what lets a server fill a candidate item's (or a user's) features
    from its id alone."""
    keys = rows.column(key)
    _, first = np.unique(keys, return_index=True)
    taken = rows.take(np.sort(first))
    columns = [key] + [c for n in names for c in ([n, specs[n]["length"]] if specs[n]["kind"] == "sequence" else [n])]
    path = os.path.join(folder, TABLES, f"{name}.npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_npz(path, as_arrays(taken, {c: specs[c] for c in columns}))
    log(f"table {name}: {len(first)} values of {key} -> {', '.join(names)}")
    return {"file": os.path.relpath(path, folder), "key": key, "columns": columns, "rows": int(len(first))}


def write_catalog(item_graph, catalog, folder, log):
    """Every catalog item through the exported item tower (so that the index holds what the served
    tower computes), their ids and a faiss inner-product index, into ``folder/catalog``."""
    ids, columns = catalog["ids"], catalog["columns"]
    graph = Graph(folder, item_graph)
    vectors = np.concatenate([graph.run({n: c[s:s + 4096] for n, c in columns.items()})[item_graph["outputs"][0]]
                              for s in range(0, len(ids), 4096)]).astype(np.float32)
    os.makedirs(os.path.join(folder, CATALOG))
    np.save(os.path.join(folder, CATALOG, "ids.npy"), np.asarray(ids, dtype=np.int64))
    np.save(os.path.join(folder, CATALOG, "vectors.npy"), vectors)
    faiss = import_faiss()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, os.path.join(folder, CATALOG, "index.faiss"))
    log(f"catalog: {len(ids)} items, {vectors.shape[1]}-d vectors, exact inner-product index")
    about = {"items": int(len(ids)), "dim": int(vectors.shape[1]), "index": "flat_ip",
             "id_input": catalog.get("id_input", "item_id")}
    for optional in ("raw_ids", "user_raw_ids"):  # ids of the source data, to join with other exports
        if catalog.get(optional) is not None:
            np.save(os.path.join(folder, CATALOG, f"{optional}.npy"), np.asarray(catalog[optional], dtype=np.int64))
            about[optional] = True
    return about


def import_faiss():
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
    import faiss

    return faiss

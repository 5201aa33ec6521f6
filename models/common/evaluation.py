"""Evaluation protocols: what tools/infer.py does with saved models, chosen by the model's paradigm
(``DygraphModel.create_evaluation``):

- ``RankingEvaluation`` (ranking and multi-task models): the model's infer metrics over the test
  rows (AUC and logloss, per task), per-sample predictions with ``runner.infer_output_path``;
- retrieval (models.common.retrieval.RetrievalEvaluation): export embeddings, search the catalog;
- per-task fine-tune-then-test (models.common.meta_model.FinetuneEvaluation, MetaHeac);
- cold-start and warm-up (models.common.coldstart.WarmupEvaluation, MetaEmb).

An evaluation reads its data when made; ``evaluate(model, config, label, output_dir)`` then scores
one trained model (an epoch's checkpoint, or one seed's model with ``tools/infer.py --seeds``) and
returns its results (a dict; its numbers are logged); ``finish(results, output_dir)`` gets every
label's results and returns the headline numbers metrics.json and the demo table show.
"""
import os

import numpy as np
import pandas as pd
import paddle

from models.common.artifacts import write_atomic
from models.common.data.loader import create_dataset, create_loader
from models.common.loading import load_reader
from models.common.metrics import to_numpy


def evaluate(dygraph_model, model, dataset, config, collect=False):
    """Evaluation metrics of ``model`` over ``dataset`` (the model's infer metrics, no gradient).
    -> (values {metric: number}, outputs {column: array} when ``collect`` else None)."""
    metrics, names = dygraph_model.create_metrics("infer")
    for metric in metrics:
        metric.reset()
    columns = {} if collect else None
    was_training = model.training
    model.eval()
    with paddle.no_grad():
        for batch in create_loader(dataset, config, "infer"):
            metrics, outputs = dygraph_model.infer_forward(model, metrics, batch, config)
            if collect:
                for name, value in outputs.items():
                    columns.setdefault(name, []).append(to_numpy(value))
    if was_training:
        model.train()
    values = {n: m.accumulate() for n, m in zip(names, metrics)}
    if collect:
        columns = {name: np.concatenate(parts) for name, parts in columns.items()}
    return values, columns


def test_rows(config):
    """The infer reader's dataset over ``runner.test_data_dir``."""
    return create_dataset(load_reader(config, "infer"), config, "infer")


def numbers(values):
    """The plain numbers of a result dict (what a log line and a headline show)."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def mean_over_seeds(results):
    """{metric: mean} over several seeds' results, and {metric: (mean, std, values)} (ddof 1)."""
    table = pd.DataFrame([numbers(r) for r in results.values()])
    spread = {k: (float(table[k].mean()), float(table[k].std(ddof=1)), table[k].tolist()) for k in table.columns}
    return {k: v[0] for k, v in spread.items()}, spread


class Evaluation:
    """One evaluation protocol (see the module docstring)."""

    name = "infer"  # the key of the results in metrics.json, and the output folder's default name

    def __init__(self, dygraph_model, config, log):
        self.dm, self.config, self.log = dygraph_model, config, log
        self.opened = []  # (config key, dataset) of the data read: checked against what the model was trained on

    def read(self, config_key, dataset):
        self.opened.append((config_key, dataset))
        return dataset

    def evaluate(self, model, config, label, output_dir):
        raise NotImplementedError

    def finish(self, results, output_dir):
        """The headline: the last result's numbers (those the model names in ``headline_keys``),
        or with several seeds their mean."""
        if len(results) > 1 and all(str(label).startswith("seed") for label in results):
            values, spread = mean_over_seeds(results)
            for key, (mean, std, _) in spread.items():
                self.log(f"{key}: {mean:.6f} +- {std:.6f} over {len(results)} seeds")
        else:
            values = numbers(list(results.values())[-1])
        keys = getattr(self.dm, "headline_keys", None)
        return {k: values[k] for k in keys if k in values} if keys else values


class RankingEvaluation(Evaluation):
    """The infer metrics of ranking and multi-task models over runner.test_data_dir; with
    runner.infer_output_path, every sample's labels and predictions in predictions_<label>.csv."""

    def __init__(self, dygraph_model, config, log):
        super().__init__(dygraph_model, config, log)
        self.dataset = self.read("runner.test_data_dir", test_rows(config))

    def evaluate(self, model, config, label, output_dir):
        collect = bool(config.get("runner.infer_output_path"))
        values, columns = evaluate(self.dm, model, self.dataset, config, collect=collect)
        if collect:
            frame = pd.DataFrame(columns)
            frame.index.name = "index"
            target = os.path.join(output_dir, f"predictions_{label}.csv")
            write_atomic(target, lambda f: frame.to_csv(f, float_format="%.6g"))
            self.log(f"wrote {len(frame)} predictions to {os.path.basename(target)}")
        return values


"""Fine-tune-then-test evaluation of a meta-trained MetaHeac model:

    python models/multitask/metaheac/infer_meta.py -m models/multitask/metaheac/config.yaml [-o key=value ...]

For every test task (ad) of each configured test set (runner.test_hot_data_dir and
runner.test_cold_data_dir, else runner.test_data_dir): start from the meta-trained weights
(restored in memory), fine-tune with a fresh Adam (local_test_learning_rate) for
runner.infer_train_epoch passes over the task's stage-1 (seed) rows in batch_size chunks, then
score its stage-2 (candidate) rows. The same figures without fine-tuning are reported too.

Fine-tuning works on a copy of the table rows the task's stage-1 rows use instead of the whole
table: a fresh Adam leaves rows that never get a gradient exactly where they are, so this is the
dense Adam's result at a fraction of the cost, and the meta-trained table is never modified (only
the dense weights need restoring between tasks). Stage 2 is scored with those rows plus the
meta-trained rows of ids only the candidates have.

Writes <output>/tasks_epoch<e>.csv (one row per task) and <output>/metrics.json (per set: pooled
AUC, GAUC = mean AUC over tasks with both labels, precision/recall at the top 5%; "headline"
holds the main numbers), <output> = runner.infer_output_path or <infer_load_path>/infer_meta.
Checkpoints load strictly: a parameter that does not fit the config's network is an error.
"""
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
import paddle  # noqa: E402

from models.common.data import list_data_files  # noqa: E402
from models.common.metrics import auc, gauc, precision_recall_at_top  # noqa: E402
from tools.infer import prepare_evaluation  # noqa: E402
from tools.utils.checkpoint import load_checkpoint, write_atomic, write_json  # noqa: E402
from tools.utils.config import ConfigError  # noqa: E402
from models.common.loading import load_reader  # noqa: E402
from tools.utils.runtime import run_main, setup  # noqa: E402

TOP_FRACTION = 0.05  # precision/recall among the top 5% of each task's candidates, as the official code


def test_sets(config):
    """[(name, folder)]: hot and cold when configured, else the plain test folder."""
    sets = [(name, config.get(f"runner.test_{name}_data_dir")) for name in ("hot", "cold")]
    sets = [(n, d) for n, d in sets if d]
    if not sets and config.get("runner.test_data_dir"):
        sets = [("test", config.get("runner.test_data_dir"))]
    if not sets:
        raise ConfigError(f"{config.path}: set runner.test_hot_data_dir / runner.test_cold_data_dir "
                          f"(or runner.test_data_dir) to evaluate")
    return sets


class TaskEvaluator:
    """Fine-tunes and scores one task at a time, always starting from the weights the model had
    when this object was made."""

    def __init__(self, model, dygraph_model, config):
        self.model, self.dm = model, dygraph_model
        self.table = model.embedding.weight
        self.table_name = next(n for n, p in model.named_parameters() if p is self.table)
        self.dense = [(n, p) for n, p in model.named_parameters() if p is not self.table]
        self.snapshot = {n: p.detach().clone() for n, p in self.dense}  # in memory, not re-read from disk
        self.lr = config.get("hyper_parameters.optimizer.local_test_learning_rate")
        self.epochs = config.get("runner.infer_train_epoch")
        self.batch_size = config.get("hyper_parameters.batch_size")
        self.eval_batch = config.get("runner.infer_batch_size") or max(self.batch_size, 1024)
        self.seed = config.get("runner.seed")

    def restore(self):
        for name, p in self.dense:
            p.set_value(self.snapshot[name])

    def _predict(self, batch, params=None, ids=None):
        """Scores of a batch dict, in chunks of eval_batch rows; ``ids``: rows in ``params``' table subset."""
        self.model.eval()
        out = []
        with paddle.no_grad():
            for i in range(0, len(batch["label"]), self.eval_batch):
                rows = slice(i, i + self.eval_batch)
                out.append(self.model(_tensors(batch, rows), params,
                                      None if ids is None else paddle.to_tensor(ids[rows])).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _global_ids(self, batch):
        with paddle.no_grad():
            return self.model.global_ids(_tensors(batch)).numpy()

    def predict_without_finetune(self, task):
        self.restore()
        return self._predict(task.stage2)

    def finetune_and_predict(self, task):
        self.restore()
        # Everything random depends on (seed, aid) only: task order cannot change a task's result.
        paddle.seed((self.seed * 1_000_003 + task.aid) % (2 ** 31))
        rng = np.random.default_rng([self.seed, task.aid])
        seed_ids, cand_ids = self._global_ids(task.stage1), self._global_ids(task.stage2)
        # Only the seed rows' table rows are trained (the others get no gradient); the candidates
        # are scored with those rows and the meta-trained ones for the rest.
        seed_rows, seed_local = np.unique(seed_ids, return_inverse=True)
        all_rows, local = np.unique(np.concatenate([seed_rows, cand_ids.ravel()]), return_inverse=True)
        seed_local = seed_local.reshape(seed_ids.shape)
        seed_at = paddle.to_tensor(local[:len(seed_rows)])  # where the seed rows sit among all rows
        cand_local = local[len(seed_rows):].reshape(cand_ids.shape)
        with paddle.no_grad():
            start = paddle.gather(self.table, paddle.to_tensor(seed_rows))
        # (Assign(start) as initializer would go through a Python list: 0.75 s for 30k x 64 rows)
        rows = paddle.create_parameter(start.shape, start.dtype, default_initializer=paddle.nn.initializer.Constant(0.0))
        rows.set_value(start)
        params = {self.table_name: rows}
        optimizer = paddle.optimizer.Adam(learning_rate=self.lr, parameters=[p for _, p in self.dense] + [rows])
        self.model.train()
        for _ in range(self.epochs):
            order = rng.permutation(len(task.stage1["label"]))
            for i in range(0, len(order), self.batch_size):
                picked = order[i:i + self.batch_size]
                batch = _tensors(task.stage1, picked)
                pred = self.model(batch, params, paddle.to_tensor(seed_local[picked]))
                loss = self.dm.create_loss(pred, batch["label"])
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
        with paddle.no_grad():
            tuned = paddle.scatter(paddle.gather(self.table, paddle.to_tensor(all_rows)), seed_at, params[self.table_name])
        return self._predict(task.stage2, {self.table_name: tuned}, cand_local)


def _tensors(batch, rows=None):
    return {k: paddle.to_tensor(v if rows is None else v[rows]) for k, v in batch.items()}


def _mean(values):
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def summarise(frame, labels, preds, suffix):
    """Set-level figures for one kind of prediction (fine-tuned or not)."""
    all_labels = np.concatenate(labels)
    all_preds = np.concatenate([p[suffix] for p in preds])
    groups = np.concatenate([np.full(len(l), i) for i, l in enumerate(labels)])
    value, used, skipped = gauc(all_labels, all_preds, groups, weighted=False)
    return {"auc": auc(all_labels, all_preds), "gauc": value, "gauc_tasks": used, "skipped_tasks": skipped,
            "precision_top5": _mean(frame[f"precision_top5{suffix}"]),
            "recall_top5": _mean(frame[f"recall_top5{suffix}"])}


def evaluate_set(evaluator, dataset, name, log):
    records, labels, preds = [], [], []
    for task in dataset.tasks:
        start = time.perf_counter()
        tuned = evaluator.finetune_and_predict(task)
        seconds = time.perf_counter() - start
        plain = evaluator.predict_without_finetune(task)
        y = task.stage2["label"]
        record = {"set": name, "aid": task.aid, "seed_rows": len(task.stage1["label"]),
                  "seed_positives": int(task.stage1["label"].sum()),
                  "rows": len(y), "positives": int(y.sum()), "finetune_seconds": round(seconds, 4)}
        for suffix, p in (("", tuned), ("_no_finetune", plain)):
            record[f"auc{suffix}"] = auc(y, p)
            precision, recall = precision_recall_at_top(y, p, TOP_FRACTION)
            record[f"precision_top5{suffix}"], record[f"recall_top5{suffix}"] = precision, recall
        records.append(record)
        labels.append(y)
        preds.append({"": tuned, "_no_finetune": plain})
        shown = "skipped (one label only)" if math.isnan(record["auc"]) else f"{record['auc']:.4f}"
        log(f"[{name}] aid {task.aid}: rows {len(y)}, positives {record['positives']}, auc {shown} "
            f"(no fine-tune {record['auc_no_finetune']:.4f}), fine-tune {seconds:.2f}s")
    frame = pd.DataFrame(records)
    summary = summarise(frame, labels, preds, "")
    summary["no_finetune"] = summarise(frame, labels, preds, "_no_finetune")
    summary.update(tasks=len(records), rows=int(sum(len(l) for l in labels)),
                   tasks_without_candidates=len(dataset.without_candidates),
                   finetune_seconds_per_task=float(frame["finetune_seconds"].mean()) if len(frame) else float("nan"))
    skipped = [int(a) for a, v in zip(frame["aid"], frame["auc"]) if math.isnan(v)] if len(frame) else []
    summary["skipped_aids"] = skipped
    return frame, summary


def infer_meta(ctx):
    """Evaluate the configured epochs; return {epoch: {set: summary}}."""
    config, dm = ctx.config, ctx.dygraph_model
    # Folder, epochs and a writable output folder are settled (and logged) before any work.
    load_path, epochs, output_dir = prepare_evaluation(config, ctx.log, "infer_meta")
    reader = load_reader(config, "infer")
    datasets = []
    for name, folder in test_sets(config):
        key = f"runner.test_{name}_data_dir" if name != "test" else "runner.test_data_dir"
        dataset = reader(list_data_files(folder, key), config)
        if dataset.without_candidates:
            ctx.log(f"[{name}] {len(dataset.without_candidates)} task(s) have seed rows but no candidates: not evaluated")
        datasets.append((name, dataset))
    model = dm.create_model(config)
    results = {}
    for epoch in epochs:
        load_checkpoint(load_path, epoch, model)
        evaluator = TaskEvaluator(model, dm, config)
        results[epoch], frames = {}, []
        for name, dataset in datasets:
            frame, summary = evaluate_set(evaluator, dataset, name, ctx.log)
            frames.append(frame.assign(epoch=epoch))
            results[epoch][name] = summary
            plain = summary["no_finetune"]
            ctx.log(f"[{name}] epoch {epoch}: {summary['tasks']} tasks, AUC {summary['auc']:.4f}, "
                    f"GAUC {summary['gauc']:.4f} over {summary['gauc_tasks']} tasks "
                    f"({summary['skipped_tasks']} skipped: one label), precision@5% {summary['precision_top5']:.4f}, "
                    f"recall@5% {summary['recall_top5']:.4f} | without fine-tuning: AUC {plain['auc']:.4f}, "
                    f"GAUC {plain['gauc']:.4f}, precision@5% {plain['precision_top5']:.4f}, "
                    f"recall@5% {plain['recall_top5']:.4f} | {summary['finetune_seconds_per_task']:.3f} s/task")
        evaluator.restore()
        target = os.path.join(output_dir, f"tasks_epoch{epoch}.csv")
        table = pd.concat(frames)
        write_atomic(target, lambda f: table.to_csv(f, index=False, float_format="%.6g"))
        ctx.log(f"wrote per-task results to {target}")
    last = results[epochs[-1]]
    headline = {}
    for name, summary in last.items():
        headline[f"auc_{name}"] = summary["auc"]
        headline[f"gauc_{name}"] = summary["gauc"]
        headline[f"auc_{name}_no_finetune"] = summary["no_finetune"]["auc"]
        headline[f"gauc_{name}_no_finetune"] = summary["no_finetune"]["gauc"]
    write_json(os.path.join(output_dir, "metrics.json"), {
        "config": config.path, "load_path": load_path, "headline": headline,
        "infer_meta": [{"epoch": e, **sets} for e, sets in results.items()]})
    ctx.log(f"wrote {os.path.join(output_dir, 'metrics.json')}")
    return results


def main(args):
    """Fine-tune on each test task's seed users, then test on its candidates (MetaHeac protocol)."""
    return infer_meta(setup(args, distributed=False))


if __name__ == "__main__":
    run_main(main)

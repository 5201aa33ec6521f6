"""The meta-learning paradigm (MAML-style, MetaHeac): tasks sampled per meta-batch, a meta-step
with fast weights through one inner step per task, and the per-task fine-tune-then-test evaluation.

Training. The training rows are grouped by the data set's task key (its ``GroupKey`` feature, e.g.
the ad ``aid``); ``TaskSampler`` makes each step a meta-batch of ``task_count`` distinct tasks,
drawn one after another without replacement with probability proportional to their rows among the
tasks not drawn yet (the official MetaHeac code's ``np.random.choice(aids, task_count,
replace=False, p=rows / total)``; only if the data has fewer than ``task_count`` tasks are they
drawn with replacement), with a support and a query set of ``batch_size`` rows each drawn from the
task's rows independently (they may overlap, as in the official code; a task with fewer rows is
drawn with replacement and counted in ``replaced``). Randomness comes from a generator seeded with
(runner.seed, epoch, step): the same run gives the same batches, whatever runner.num_workers.

One trainer step is one meta-step (``meta_loss``): for each task, one SGD step with ``local_lr``
on the support loss gives fast weights; the query loss under the fast weights, averaged over the
tasks, is what the trainer back-propagates and the optimizer (``global_learning_rate``) minimises.
Fast weights of the embedding table cover only the rows the task uses (models.common.meta), so a
meta-step never touches the whole table and the table's gradient is row-sparse.

A meta-learned network has ``embedding`` (a models.common.embedding.FeatureEmbedding whose table is
``TABLE``), ``global_ids(batch)`` and ``forward(batch, params=None, ids=None)`` (see MetaHeac's net.py).

Evaluation (tools/infer.py; MetaHeac's infer_meta.py runs it): each test folder
(``runner.test_hot_data_dir`` / ``test_cold_data_dir``, or ``test_data_dir``) holds *stage1* files
(a task's seed rows, for fine-tuning) and *stage2* files (its candidates, for testing). For every
task the meta-trained model is fine-tuned on the seed rows (``infer_train_epoch`` passes, Adam with
``local_test_learning_rate``), then scores the candidates; every task starts from the meta-trained
weights. Per-task AUC, precision / recall among the top 5%, then AUC and GAUC per set, also
without fine-tuning.
"""
import math
import os
import time

import numpy as np
import pandas as pd
import paddle

from models.common.artifacts import write_atomic
from models.common.base_model import BaseDygraphModel, unwrap
from models.common.data import DataFormatError, list_data_files
from models.common.data.loader import to_tensors
from models.common.embedding import compact_ids, gather_rows
from models.common.evaluation import Evaluation
from models.common.features import GroupKey
from models.common.loading import load_reader
from models.common.meta import binary_cross_entropy, inner_sgd_step
from models.common.metrics import auc, gauc, precision_recall_at_top
from models.common.spec import ConfigError, Param, positive_int

TABLE = "embedding.table.weight"  # the shared table's name in a meta-learned network's named_parameters()
TOP_FRACTION = 0.05  # precision/recall among the top 5% of each task's candidates, as the official code
HP = "hyper_parameters"


# ---- the meta-step ----------------------------------------------------------------------------
def task_batch(batch, t):
    """Task t of a meta-batch half ({column: [T, B, ...]}) -> {column: [B, ...]}."""
    return {k: v[t] for k, v in batch.items()}


def task_params(model, unique_ids):
    """The weights one task works with: every dense parameter and the table rows ``unique_ids``."""
    params = {name: p for name, p in model.named_parameters() if name != TABLE}
    params[TABLE] = gather_rows(model.embedding.weight, unique_ids)
    return params


def meta_loss(model, support, query, local_lr, first_order, loss_fn):
    """Mean query loss over tasks after one inner SGD step per task.

    ``support`` / ``query``: batches {column: tensor [T, B, ...]} of T tasks.
    -> (loss, query predictions [T, B]).
    """
    losses, preds = [], []
    for t in range(support["label"].shape[0]):
        s_batch, q_batch = task_batch(support, t), task_batch(query, t)
        unique, (s_local, q_local) = compact_ids([model.global_ids(s_batch), model.global_ids(q_batch)])
        params = task_params(model, unique)
        support_loss = loss_fn(model(s_batch, params, s_local), s_batch["label"])
        fast = inner_sgd_step(support_loss, params, local_lr, first_order)
        pred = model(q_batch, fast, q_local)
        losses.append(loss_fn(pred, q_batch["label"]))
        preds.append(pred)
    return paddle.stack(losses).mean(), paddle.stack(preds)


def task_key(schema):
    """The name of the schema's task key (its GroupKey feature)."""
    keys = schema.of_kind(GroupKey)
    if len(keys) != 1:
        raise ValueError(f"meta-learning needs exactly one task key (GroupKey) in the data's schema, found {keys}")
    return keys[0].name


class TaskSampler(paddle.io.Dataset):
    """Item i of an epoch is one meta-batch ``{"support": batch, "query": batch, "replaced": n}``
    of ``task_count`` tasks, each batch ``{column: array [task_count, batch_size, ...]}`` (see the
    module docstring). The rows stay where they are (the columnar cache); only the task grouping
    (an index per row) is held in memory."""

    yields_batches = True  # the loader passes our meta-batches through unchanged

    def __init__(self, rows, config):
        super().__init__()
        self.rows = rows
        self.task_count = config.get(f"{HP}.task_count")
        self.batch_size = config.get(f"{HP}.batch_size")
        self.seed = config.get("runner.seed")
        self.epoch = 0
        # Group rows by task once: task t owns self.order[starts[t]:starts[t] + counts[t]].
        key = rows.column(task_key(rows.schema))
        self.order = np.argsort(key, kind="stable")
        self.tasks, self.starts, self.counts = np.unique(key[self.order], return_index=True, return_counts=True)
        self.probs = self.counts / self.counts.sum()
        # Fewer tasks than task_count (tiny data only): tasks are drawn with replacement instead.
        self.distinct_tasks = self.task_count <= len(self.tasks)
        if not self.distinct_tasks:
            print(f"task sampler: task_count={self.task_count} but only {len(self.tasks)} task(s): the tasks of "
                  f"a meta-batch are drawn with replacement", flush=True)
        self.small_tasks = int((self.counts < self.batch_size).sum())
        if self.small_tasks:
            print(f"task sampler: {self.small_tasks} of {len(self.tasks)} tasks have fewer than "
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


class MetaLearningModel(BaseDygraphModel):
    """Base ``DygraphModel`` of meta-learned models: the meta-step, the task sampler and the
    fine-tune-then-test evaluation; a model folder writes ``create_model`` and its network's keys."""

    config_spec = {
        f"{HP}.task_count": positive_int(help="tasks per meta-batch"),
        f"{HP}.batch_size": positive_int(help="support = query = fine-tuning batch size"),
        f"{HP}.local_lr": Param(float, min=0, help="inner SGD step of meta-training"),
        f"{HP}.first_order": Param(bool, default=False, help="first-order MAML (no gradient through the inner step)"),
        f"{HP}.optimizer.global_learning_rate": Param(float, above=0, help="meta-training optimizer's learning rate"),
        f"{HP}.optimizer.local_test_learning_rate": Param(float, above=0,
                                                          help="Adam learning rate of per-task fine-tuning"),
        "runner.infer_train_epoch": Param(int, min=0, help="fine-tuning passes over a test task's seed rows"),
        "runner.test_hot_data_dir": Param(str, required=False, help="hot test tasks (stage1 / stage2 files)"),
        "runner.test_cold_data_dir": Param(str, required=False, help="cold test tasks (stage1 / stage2 files)"),
    }
    learning_rate_key = f"{HP}.optimizer.global_learning_rate"
    # Row-sparse table gradients through second-order MAML: paddle.DataParallel crashes on them.
    supports_data_parallel = False

    def __init__(self):
        self.replaced_draws = 0  # task draws with replacement (task smaller than batch_size), this run

    def training_data(self, rows, config):
        return TaskSampler(rows, config)

    def create_evaluation(self, config, log):
        return FinetuneEvaluation(self, config, log)

    def create_loss(self, pred, label):
        return binary_cross_entropy(pred, label)  # twice differentiable (paddle's BCE is not)

    def create_feeds(self, batch_data, config):
        """-> (support, query, replaced): support/query = {column: tensor [T, B, ...]}."""
        return to_tensors(batch_data["support"]), to_tensors(batch_data["query"]), int(batch_data["replaced"])

    def train_forward(self, dy_model, metrics_list, batch_data, config):
        support, query, replaced = self.create_feeds(batch_data, config)
        loss, preds = meta_loss(unwrap(dy_model), support, query, config.get(f"{HP}.local_lr"),
                                config.get(f"{HP}.first_order"), self.create_loss)
        for metric in metrics_list:
            metric.update(preds.detach(), query["label"])
        self.replaced_draws += replaced
        return loss, metrics_list, {"replaced_draws": self.replaced_draws}

    def batch_rows(self, batch_data):
        """Support + query rows of a meta-batch."""
        return 2 * int(np.prod(batch_data["support"]["label"].shape[:2]))


# ---- the fine-tune-then-test evaluation ----------------------------------------------------------
class Task:
    def __init__(self, key, stage1, stage2):
        self.aid, self.stage1, self.stage2 = int(key), stage1, stage2


def by_task(dataset):
    """{task key: batch dict} grouping rows once (stable: file order kept within a task)."""
    key = dataset.column(task_key(dataset.schema))
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    ends = np.r_[starts[1:], len(order)]
    return {int(a): dataset.take(order[s:e]) for a, s, e in zip(keys, starts, ends)}


def split_stages(files, folder):
    """The stage-1 and stage-2 files of a test folder (names containing 'stage1' / 'stage2')."""
    stage1 = [f for f in files if "stage1" in os.path.basename(f)]
    stage2 = [f for f in files if "stage2" in os.path.basename(f)]
    if not stage1 or not stage2:
        raise DataFormatError(f"{folder}: expected files named *stage1* and *stage2*, "
                              f"found {[os.path.basename(f) for f in files]}")
    return stage1, stage2


class TestTasks:
    """The tasks of one test folder, in ascending key order, each with its stage-1 and stage-2 rows
    as batch dicts; ``without_candidates``: tasks with seed rows only (not evaluated)."""

    def __init__(self, reader, folder, config, key):
        stage1_files, stage2_files = split_stages(list_data_files(folder, key), folder)
        self.rows = [reader(stage1_files, config), reader(stage2_files, config)]
        stage1, stage2 = by_task(self.rows[0]), by_task(self.rows[1])
        missing = sorted(set(stage2) - set(stage1))
        if missing:
            raise DataFormatError(f"{folder}: task(s) {missing[:5]} have stage-2 rows but no stage-1 (seed) rows")
        self.without_candidates = sorted(set(stage1) - set(stage2))
        self.tasks = [Task(a, stage1[a], stage2[a]) for a in sorted(stage2)]


def test_sets(config):
    """[(name, folder, key)]: hot and cold when configured, else the plain test folder."""
    sets = [(name, config.get(f"runner.test_{name}_data_dir"), f"runner.test_{name}_data_dir") for name in ("hot", "cold")]
    sets = [s for s in sets if s[1]]
    if not sets and config.get("runner.test_data_dir"):
        sets = [("test", config.get("runner.test_data_dir"), "runner.test_data_dir")]
    if not sets:
        raise ConfigError(f"{config.path}: set runner.test_hot_data_dir / runner.test_cold_data_dir "
                          f"(or runner.test_data_dir) to evaluate")
    return sets


class TaskEvaluator:
    """Fine-tunes and scores one task at a time, always starting from the weights the model had
    when this object was made (restored in memory).

    Fine-tuning works on a copy of the table rows the task's stage-1 rows use instead of the whole
    table: a fresh Adam leaves rows that never get a gradient exactly where they are, so this is
    the dense Adam's result at a fraction of the cost, and the meta-trained table is never
    modified (only the dense weights need restoring between tasks). Stage 2 is scored with those
    rows plus the meta-trained rows of ids only the candidates have."""

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
                out.append(self.model(to_tensors(batch, rows), params,
                                      None if ids is None else paddle.to_tensor(ids[rows])).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _global_ids(self, batch):
        with paddle.no_grad():
            return self.model.global_ids(to_tensors(batch)).numpy()

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
                batch = to_tensors(task.stage1, picked)
                pred = self.model(batch, params, paddle.to_tensor(seed_local[picked]))
                loss = self.dm.create_loss(pred, batch["label"])
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
        with paddle.no_grad():
            tuned = paddle.scatter(paddle.gather(self.table, paddle.to_tensor(all_rows)), seed_at, params[self.table_name])
        return self._predict(task.stage2, {self.table_name: tuned}, cand_local)


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


class FinetuneEvaluation(Evaluation):
    """Per trained model: fine-tune then test every task of every test set (module docstring);
    per-task figures go to tasks_<label>.csv."""

    name = "infer_meta"

    def __init__(self, dygraph_model, config, log):
        super().__init__(dygraph_model, config, log)
        reader = load_reader(config, "infer")
        self.sets = []
        for name, folder, key in test_sets(config):
            tasks = TestTasks(reader, folder, config, key)
            self.opened += [(key, rows) for rows in tasks.rows]
            if tasks.without_candidates:
                log(f"[{name}] {len(tasks.without_candidates)} task(s) have seed rows but no candidates: not evaluated")
            self.sets.append((name, tasks))

    def evaluate(self, model, config, label, output_dir):
        evaluator = TaskEvaluator(model, self.dm, config)
        results, frames = {}, []
        for name, dataset in self.sets:
            frame, summary = evaluate_set(evaluator, dataset, name, self.log)
            frames.append(frame.assign(run=label))
            results[name] = summary
            plain = summary["no_finetune"]
            self.log(f"[{name}] {label}: {summary['tasks']} tasks, AUC {summary['auc']:.4f}, "
                     f"GAUC {summary['gauc']:.4f} over {summary['gauc_tasks']} tasks "
                     f"({summary['skipped_tasks']} skipped: one label), precision@5% {summary['precision_top5']:.4f}, "
                     f"recall@5% {summary['recall_top5']:.4f} | without fine-tuning: AUC {plain['auc']:.4f}, "
                     f"GAUC {plain['gauc']:.4f}, precision@5% {plain['precision_top5']:.4f}, "
                     f"recall@5% {plain['recall_top5']:.4f} | {summary['finetune_seconds_per_task']:.3f} s/task")
        evaluator.restore()
        target = os.path.join(output_dir, f"tasks_{label}.csv")
        table = pd.concat(frames)
        write_atomic(target, lambda f: table.to_csv(f, index=False, float_format="%.6g"))
        self.log(f"wrote per-task results to {os.path.basename(target)}")
        return results

    def finish(self, results, output_dir):
        """Each run's per-set AUC and GAUC, with and without fine-tuning, as flat numbers; the base
        class picks the last epoch's, or the mean over seeds."""
        flat = {}
        for label, result in results.items():
            flat[label] = {}
            for name, summary in result.items():
                flat[label].update({f"auc_{name}": summary["auc"], f"gauc_{name}": summary["gauc"],
                                    f"auc_{name}_no_finetune": summary["no_finetune"]["auc"],
                                    f"gauc_{name}_no_finetune": summary["no_finetune"]["gauc"]})
        return super().finish(flat, output_dir)


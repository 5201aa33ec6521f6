"""benchmarks/baselines/paddlerec_metaheac.py: PaddleRec's own MetaHeac code (a stub with its
interface here) gets its input layout and is stepped as PaddleRec's trainer and infer.py step it."""
import importlib
import sys

import numpy as np
import paddle
import pytest

from benchmarks.baselines import paddlerec_metaheac as bench
from models.common.meta_model import Task
from tests.models.metaheac.test_metaheac import _config, _random_rows

_STUB_NET = """
import paddle
class WideAndDeepModel(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.w = self.create_parameter([1], default_initializer=paddle.nn.initializer.Constant(1.0))
"""
_STUB_DYGRAPH_MODEL = """
import paddle
import net  # PaddleRec's dygraph_model imports its net.py under this name
class DygraphModel:
    seen = []  # the batches train_forward got
    def create_model(self, config):
        return net.WideAndDeepModel()
    def create_optimizer(self, model, config, mode="train"):
        return paddle.optimizer.SGD(learning_rate=0.5, parameters=model.parameters())
    def create_metrics(self):
        return ["auc"], ["AUC"]
    def train_forward(self, model, metric_list, batch, config):
        self.seen.append(batch)
        return (model.w * model.w).sum(), metric_list, {}
    def infer_train_forward(self, model, batch, config):
        self.seen.append(("tune", float(model.w.numpy()[0]), batch))
        return (model.w * model.w).sum()
    def infer_forward(self, model, metric_list, metric_list_local, batch, config):
        self.seen.append(("score", batch))
        return metric_list, metric_list_local
"""


def test_paddlerec_code_side_gets_its_layout_and_is_stepped(tmp_path):
    """benchmark.paddlerec_code_dir: PaddleRec's own dygraph_model (a stub with its interface
    here) receives the meta-batch in its layout, is stepped as its trainer steps it (the Adam /
    SGD step moves the parameter), and sys.modules entries named net / dygraph_model are restored."""
    (tmp_path / "net.py").write_text(_STUB_NET)
    (tmp_path / "dygraph_model.py").write_text(_STUB_DYGRAPH_MODEL)
    config, _ = _config("runner.seed=1")
    ours = {name: sys.modules.get(name) for name in ("net", "dygraph_model")}
    runner = bench.PaddleRecCodeRunner(config, str(tmp_path))
    assert {name: sys.modules.get(name) for name in ("net", "dygraph_model")} == ours
    rng = np.random.default_rng(0)
    tasks = [[_random_rows(rng, 8, aid=t) for t in range(3)] for _ in range(2)]
    batch = {side: {k: np.stack([rows[k] for rows in part]) for k in part[0]}
             for side, part in zip(("support", "query"), tasks)}
    runner.step(batch)
    assert len(runner.times) == 1 and float(runner.model.w.numpy()[0]) == pytest.approx(1.0 - 0.5 * 2.0)
    lookalike = importlib.import_module("models.common.datasets.lookalike")
    x_spt, y_spt, x_qry, y_qry = runner.dm.seen[-1]
    for x, y, part in ((x_spt, y_spt, tasks[0]), (x_qry, y_qry, tasks[1])):
        assert len(x) == len(y) == 3
        for t, rows in enumerate(part):
            static, dynamic, lengths, ad = (v.numpy() for v in x[t])
            np.testing.assert_array_equal(static, np.stack([rows[n] for n in lookalike.STATIC], axis=1))
            assert dynamic.shape == (8, 50)
            np.testing.assert_array_equal(dynamic, np.concatenate([rows[n] for n in lookalike.DYNAMIC], axis=1))
            np.testing.assert_array_equal(lengths, np.stack([rows[n + "_length"] for n in lookalike.DYNAMIC], axis=1))
            np.testing.assert_array_equal(ad, np.stack([rows[n] for n in lookalike.AD], axis=1))
            assert y[t].dtype == paddle.int64 and y[t].numpy().tolist() == rows["label"].tolist()


def test_paddlerec_code_finetune_follows_its_infer_loop(tmp_path):
    """Per task: the saved weights are reloaded, infer_train_epoch passes over the seed rows in
    batches of batch_size, then the candidates in batches, all in PaddleRec's layout."""
    (tmp_path / "net.py").write_text(_STUB_NET)
    (tmp_path / "dygraph_model.py").write_text(_STUB_DYGRAPH_MODEL)
    config, _ = _config("hyper_parameters.batch_size=4", "runner.infer_train_epoch=2")
    runner = bench.PaddleRecCodeRunner(config, str(tmp_path))
    path = str(tmp_path / "saved.pdparams")
    paddle.save(runner.model.state_dict(), path)
    runner.model.w.set_value(paddle.to_tensor([7.0]))  # must not survive the reload
    rng = np.random.default_rng(0)
    task = Task(1, _random_rows(rng, 10), _random_rows(rng, 6))
    bench.paddlerec_code_finetune(runner.dm, runner.model, path, task, config)
    tuned = [entry for entry in runner.dm.seen if entry[0] == "tune"]
    scored = [entry[1] for entry in runner.dm.seen if entry[0] == "score"]
    assert [len(batch[1]) for _, _, batch in tuned] == [4, 4, 2] * 2 and [len(b[1]) for b in scored] == [4, 2]
    assert tuned[0][1] == 1.0 and tuned[1][1] == pytest.approx(1.0 - 0.5 * 2.0)  # reloaded, then SGD steps
    np.testing.assert_array_equal(np.concatenate([b[0][1].numpy() for _, _, b in tuned[:3]]),
                                  np.concatenate([task.stage1[n] for n in ("interest1", "interest2", "interest3",
                                                                             "kw1", "kw2", "topic1", "topic2")], 1))
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in scored]), task.stage2["label"])


def test_paddlerec_code_dir_without_its_files_is_named(tmp_path):
    config, _ = _config()
    with pytest.raises(FileNotFoundError, match="benchmark.paddlerec_code_dir.*dygraph_model.py"):
        bench.PaddleRecCodeRunner(config, str(tmp_path))



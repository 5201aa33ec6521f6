"""Shared multi-task pieces: task declarations, per-task metrics (masked AUC, RMSE), mixture of
experts, towers, BagEmbedding, and the two bulk parsers (PaddleRec's Ali-CCP format, columnar CSV)."""
import os

import numpy as np
import paddle
import pytest
from sklearn.metrics import roc_auc_score

from models.common.datasets import aliccp
from models.common.data import CachedDataset, ColumnarCSVParser, DataFormatError, FieldPairParser
from models.common.embedding import BagEmbedding
from models.common.features import DenseFeature, Label, Schema, SequenceFeature, SparseFeature
from models.common.multitask import (RMSE, MetricSpec, MixtureOfExperts, MultiTaskModel, TaskMetric, Towers,
                                     parse_tasks)
from models.common.spec import SpecError
from tools.utils.config import Config


def config(**runner):
    return Config({"runner": runner, "hyper_parameters": {}}, "/tmp/x.yaml")


# ---- tasks -------------------------------------------------------------------------------------
def test_parse_tasks_reads_name_label_type_weight():
    tasks = parse_tasks([{"name": "income", "label": "income", "type": "binary", "weight": 2},
                         {"label": "age", "type": "regression"}])
    assert [(t.name, t.label, t.type, t.weight) for t in tasks] == [("income", "income", "binary", 2.0),
                                                                     ("age", "age", "regression", 1.0)]


@pytest.mark.parametrize("value, key", [
    ([{"name": "a", "label": "a", "type": "ranking"}], "tasks[0].type"),
    ([{"name": "a", "type": "binary"}], "tasks[0].label"),
    ([{"name": "a", "label": "a", "type": "binary", "weight": -1}], "tasks[0].weight"),
    ([{"name": "a", "label": "a", "type": "binary", "wieght": 1}], "tasks[0]"),
    ([{"name": "a", "label": "a", "type": "binary"}, {"name": "a", "label": "b", "type": "binary"}], "tasks[1].name"),
    ([], "tasks"),
])
def test_parse_tasks_names_the_bad_key(value, key):
    with pytest.raises(SpecError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_tasks(value)


# ---- metrics -------------------------------------------------------------------------------------
def test_masked_auc_uses_only_the_rows_where_the_condition_label_is_one():
    rng = np.random.default_rng(0)
    click = (rng.random(500) < 0.4).astype(np.float32)
    buy = click * (rng.random(500) < 0.5)
    cvr = rng.random(500)
    cvr[click == 0] = np.where(buy[click == 0] == 0, 0.99, 0.0)  # would wreck an all-rows AUC
    metric = TaskMetric(MetricSpec("auc_cvr", "auc", "cvr", "purchase", where="click"), "infer")
    for part in np.array_split(np.arange(500), 7):
        metric.update({"cvr": cvr[part]}, {"purchase": buy[part], "click": click[part]})
    clicked = click == 1
    assert metric.accumulate() == pytest.approx(roc_auc_score(buy[clicked], cvr[clicked]), abs=1e-12)
    assert abs(metric.accumulate() - roc_auc_score(buy, cvr)) > 0.05


def test_rmse_by_hand():
    m = RMSE()
    m.update(np.array([1.0, 2.0]), np.array([0.0, 2.0]))
    m.update(np.array([3.0]), np.array([1.0]))
    assert m.accumulate() == pytest.approx(np.sqrt((1 + 0 + 4) / 3))


def test_each_task_metric_matches_sklearn_and_the_loss_is_the_weighted_sum():
    model = MultiTaskModel()
    model.tasks = parse_tasks([{"name": "a", "label": "ya", "type": "binary", "weight": 0.3},
                               {"name": "b", "label": "yb", "type": "binary", "weight": 2.0},
                               {"name": "r", "label": "yr", "type": "regression", "weight": 0.5}])
    rng = np.random.default_rng(1)
    n = 300
    batch = {"ya": (rng.random(n) < 0.3).astype(np.float32), "yb": (rng.random(n) < 0.6).astype(np.float32),
             "yr": rng.normal(size=n).astype(np.float32)}
    out = {"a": rng.random((n, 1)).astype(np.float32), "b": rng.random((n, 1)).astype(np.float32),
           "r": rng.normal(size=(n, 1)).astype(np.float32)}
    metrics, names = model.create_metrics("infer")
    assert names == ["auc_a", "logloss_a", "auc_b", "logloss_b", "rmse_r"]
    for m in metrics:
        m.update(out, batch)
    values = dict(zip(names, [m.accumulate() for m in metrics]))
    assert values["auc_a"] == pytest.approx(roc_auc_score(batch["ya"], out["a"][:, 0]), abs=1e-12)
    assert values["auc_b"] == pytest.approx(roc_auc_score(batch["yb"], out["b"][:, 0]), abs=1e-12)
    assert values["rmse_r"] == pytest.approx(np.sqrt(np.mean((out["r"][:, 0] - batch["yr"]) ** 2)), rel=1e-6)
    loss = float(model.create_loss({k: paddle.to_tensor(v) for k, v in out.items()},
                                   {k: paddle.to_tensor(v) for k, v in batch.items()}))

    def bce(y, p):
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    expected = (0.3 * bce(batch["ya"], out["a"][:, 0]) + 2.0 * bce(batch["yb"], out["b"][:, 0])
                + 0.5 * np.mean((out["r"][:, 0] - batch["yr"]) ** 2))
    assert loss == pytest.approx(expected, rel=1e-4)


# ---- network pieces -----------------------------------------------------------------------------
def test_mixture_of_experts_is_each_gates_softmax_mix_of_the_experts():
    paddle.seed(0)
    moe = MixtureOfExperts(num_expert=3, num_gate=2, input_dim=5, expert_dims=[4])
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(6, 5)).astype("float32"))
    outs = moe(x)
    experts = moe.experts(x).numpy()  # [B, E, 4]
    for gate, out in zip(moe.gate_weights(x), outs):
        g = gate.numpy()
        assert np.allclose(g.sum(1), 1.0, atol=1e-6) and (g > 0).all()
        assert np.allclose(out.numpy(), np.einsum("be,beo->bo", g, experts), atol=1e-5)
    assert not np.allclose(outs[0].numpy(), outs[1].numpy())  # gates differ: so do the task inputs


def test_towers_give_sigmoid_for_binary_and_raw_output_for_regression():
    paddle.seed(0)
    tasks = parse_tasks([{"name": "p", "label": "p", "type": "binary"}, {"name": "r", "label": "r", "type": "regression"}])
    towers = Towers(tasks, 4, [3])
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(50, 4)).astype("float32") * 5)
    out = towers(x)
    assert out["p"].shape == [50, 1] and ((out["p"].numpy() > 0) & (out["p"].numpy() < 1)).all()
    raw = towers.towers[1](x).numpy()
    assert np.allclose(out["r"].numpy(), raw)


def test_bag_embedding_pools_exactly_the_valid_ids():
    features = [SparseFeature("a", 10, 4), SequenceFeature("b", 10, 4, 3, "sum", shared_with="a"),
                SequenceFeature("c", 7, 4, 5, "mean")]
    paddle.seed(0)
    bag = BagEmbedding(features)
    batch = {"a": paddle.to_tensor([1, 2]), "b": paddle.to_tensor([[1, 2, 3], [4, 9, 9]]),
             "b_length": paddle.to_tensor([3, 0]), "c": paddle.to_tensor([[1, 2, 6, 6, 6], [6, 5, 4, 3, 2]]),
             "c_length": paddle.to_tensor([2, 5])}
    w = bag.table.weight.numpy()  # a and b share rows 0..9, c owns rows 10..16
    expected = np.stack([np.stack([w[1], w[1] + w[2] + w[3], (w[11] + w[12]) / 2]),
                         np.stack([w[2], np.zeros(4), w[12:17].mean(0)])])
    assert np.allclose(bag(batch).numpy(), expected, atol=1e-6)
    # Padding beyond the length (9, 6) never matters; trailing empty bags give zeros.
    batch["c_length"] = paddle.to_tensor([2, 0])
    assert np.allclose(bag(batch).numpy()[1, 1:], 0.0)


# ---- parsers ---------------------------------------------------------------------------------------
FIELDS = ["101", "109_14", "210"]


def pair_schema():
    return Schema([Label("click"), Label("buy")] + [
        SequenceFeature(f, 100, 4, {"101": 1, "109_14": 3, "210": 2}[f], "sum", shared_with=None if f == "101" else "101")
        for f in FIELDS])


def load_pairs(tmp_path, text, skip=False):
    path = tmp_path / "part.txt"
    path.write_text(text)
    return CachedDataset([str(path)], config(skip_bad_lines=skip, data_cache_dir=str(tmp_path / "c")), pair_schema(),
                         FieldPairParser(["click", "buy"], FIELDS, " (raise max_len)"))


def test_field_pair_parser_keeps_every_pair_including_the_first(tmp_path):
    ds = load_pairs(tmp_path, "7,1,0,101:5,109_14:6,109_14:7,210:9\n\n8,0,0,210:3,109_14:1\r\n9,1,1\n")
    b = ds.take(np.arange(len(ds)))
    assert len(ds) == 3
    assert b["101"][:, 0].tolist() == [5, 0, 0] and b["101_length"].tolist() == [1, 0, 0]  # the first pair is read
    assert b["109_14"].tolist() == [[6, 7, 0], [1, 0, 0], [0, 0, 0]] and b["109_14_length"].tolist() == [2, 1, 0]
    assert b["210"][:, 0].tolist() == [9, 3, 0]
    assert b["click"].tolist() == [1, 0, 1] and b["buy"].tolist() == [0, 0, 1]


@pytest.mark.parametrize("line, message", [
    ("7,1,0,101:5,1_9_14:7", "field '1_9_14' is not one of the declared fields"),
    ("7,1,0,101:5,109_14", "field 5 is '109_14', expected '<field>:<id>'"),
    ("7,1,0,101:x", "has value 'x', expected an integer id"),
    ("7,1,0,101:5,101:6", "field '101' has 2 ids, more than its max_len 1 (raise max_len)"),
    ("7,2,0,101:5", "label click has value 2"),
    ("7,1,0,101:500", "101 has value 500 outside [0, 99]"),
    ("7,1", "found 2 fields"),
    ("7,1,0,101:5.5", "101 has value 5.5, expected an integer"),
])
def test_field_pair_parser_names_file_and_line_of_a_bad_row(tmp_path, line, message):
    with pytest.raises(DataFormatError) as error:
        load_pairs(tmp_path, "1,0,0,101:1\n" + line + "\n")
    assert "part.txt, line 2: " in str(error.value) and message in str(error.value)


def test_field_pair_parser_skips_bad_lines_when_asked(tmp_path):
    ds = load_pairs(tmp_path, "1,0,0,101:1\n7,1,0,101:x\n2,1,0,101:3\n7,1,0,101:5,101:6\n", skip=True)
    assert len(ds) == 2 and ds.skipped_lines == 2 and ds.take(np.arange(2))["101"][:, 0].tolist() == [1, 3]


def test_paddlerec_ali_ccp_rows_keep_their_first_pair(shared_data, tmp_path):
    """PaddleRec's reader starts at features[4:], dropping the first pair: every pair is read here."""
    path = os.path.join(shared_data, "ali-ccp", "paddlerec_esmm", "train", "small.txt")
    cfg = Config({"runner": {"data_cache_dir": str(tmp_path)},
                  "hyper_parameters": {"sparse_feature_number": 737946, "sparse_feature_dim": 4}}, "/tmp/x.yaml")
    ds = CachedDataset([path], cfg, aliccp.schema(cfg), aliccp.parser())
    b = ds.take(np.arange(len(ds)))
    with open(path) as f:
        lines = f.read().splitlines()
    for r, line in enumerate(lines):
        tokens = line.split(",")
        pairs = [t.split(":") for t in tokens[3:]]
        assert b["click"][r] == int(tokens[1]) and b["purchase"][r] == int(tokens[2])
        first_field, first_id = pairs[0]
        assert int(first_id) in b[first_field][r][:b[f"{first_field}_length"][r]]
        total = sum(int(b[f"{f}_length"][r]) for f in aliccp.FIELDS)
        assert total == len(pairs)  # all ~880 pairs of the line
        for f in aliccp.FIELDS:
            ids = [int(v) for k, v in pairs if k == f]
            assert b[f][r][:len(ids)].tolist() == ids


def csv_schema():
    return Schema([Label("y"), DenseFeature("v", 3), SparseFeature("s", 5, 2)])


def load_csv(tmp_path, text):
    path = tmp_path / "part.csv"
    path.write_text(text)
    return CachedDataset([str(path)], config(data_cache_dir=str(tmp_path / "c")), csv_schema(),
                         ColumnarCSVParser({"v": "hyper_parameters.v_dim"}))


def test_columnar_csv_reads_columns_by_header_name(tmp_path):
    ds = load_csv(tmp_path, "y,v:a,other,v:b,v:c,s\n1,0.5,9,1,2,3\n\n0,1,2,3,4,4\r\n")
    b = ds.take(np.arange(2))
    assert b["y"].tolist() == [1, 0] and b["s"].tolist() == [3, 4]
    assert b["v"].tolist() == [[0.5, 1, 2], [1, 3, 4]]


@pytest.mark.parametrize("text, message", [
    ("y,v:a,v:b,v:c,s\n1,0.5,1,2,3\n0,1,3,4\n", "line 3: expected 5 comma-separated values (as the header), found 4"),
    ("y,v:a,v:b,v:c,s\n1,0.5,1,2,3\n0,x,3,4,4\n", "line 3: column 'v:a' has value 'x', expected a number"),
    ("y,v:a,v:b,v:c,s\n1,0.5,1,2,3\n0,,3,4,4\n", "line 3: column 'v:a' has value '', expected a number"),
    ("y,v:a,v:b,v:c,s\n1,0.5,1,2,3\n2,1,3,4,4\n", "line 3: label y has value 2"),
    ("y,v:a,v:b,s\n1,0.5,1,2\n", "line 1: the header has 2 columns 'v:...', the schema declares v with width 3 "
                                 "(hyper_parameters.v_dim)"),
    ("y,v:a,v:b,v:c\n1,0.5,1,2\n", "line 1: the header has no column 's'"),
])
def test_columnar_csv_names_file_and_line_of_a_bad_row(tmp_path, text, message):
    with pytest.raises(DataFormatError) as error:
        load_csv(tmp_path, text)
    assert "part.csv, " + message in str(error.value)

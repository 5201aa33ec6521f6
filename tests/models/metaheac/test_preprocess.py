"""datasets/Lookalike/preprocess.py on a tiny hand-made raw set in the Tencent 2018 formats: the
split and encodings, and the outputs' manifests and id space."""
import json
import importlib
import importlib.util
import os
import shutil

import numpy as np
import pytest

from types import SimpleNamespace

from conftest import REPO, run_tool
from models.common import artifacts
from models.common.artifacts import read_manifest
from models.common.data import CachedDataset, list_data_files
from tools.utils.config import Config

FOLDER = os.path.join(REPO, "models", "multitask", "metaheac")

USERS = [
    "uid 1|age 4|gender 2|education 7|consumptionAbility 2|LBS 950|interest1 93 70 77 86 109 47 75 69 45 8 29 49"
    "|interest2 46 19|kw1 664359 276966|kw2 11395|topic1 9826 105|topic2 9708|carrier 1|house 1",
    "uid 2|age 2|gender 1|education 2|consumptionAbility 1|LBS 18|interest1 93|interest3 5|kw1 1 2 3 4 5 6 7"
    "|topic2 7|carrier 3",
    "uid 3|age 5|gender 1|LBS 950|interest2 46|kw2 11395 5|carrier 0|house 1",
    "uid 4|age 1|gender 2|education 1|consumptionAbility 2|LBS 7|interest1 70 8|topic1 105|carrier 2",
    "uid 5|age 3|gender 1|education 5|consumptionAbility 1|LBS 18|interest3 5 6|kw1 276966|carrier 1",
    "uid 6|age 4|gender 2|education 7|consumptionAbility 2|LBS 950|interest2 19|topic2 9708 7|carrier 1",
]


def _raw(folder):
    os.makedirs(folder)
    with open(os.path.join(folder, "adFeature.csv"), "w") as f:
        f.write("aid,advertiserId,campaignId,creativeId,creativeSize,adCategoryId,productId,productType\n"
                "2169,16770,38402,43877,35,89,9760,9\n411,9106,163120,220179,79,21,0,4\n"
                "894,452,38391,43862,35,10,12193,11\n450,45705,352827,565415,42,67,0,4\n")
    with open(os.path.join(folder, "userFeature.data"), "w") as f:
        f.write("\n".join(USERS) + "\n")
    # ads 2169 and 411 have 3 positive seeds, 894 and 450 one.
    train = ["aid,uid,label"] + [f"{a},{u},{l}" for a, u, l in [
        (2169, 1, 1), (2169, 2, 1), (2169, 3, 1), (2169, 4, -1), (411, 2, 1), (411, 3, 1), (411, 5, 1),
        (411, 6, -1), (894, 1, 1), (894, 4, -1), (450, 5, 1), (450, 6, -1)]]
    test = ["aid,uid,label"] + [f"{a},{u},{l}" for a, u, l in [
        (2169, 5, 1), (2169, 6, -1), (411, 1, -1), (411, 4, 1), (894, 2, 1), (894, 6, -1), (450, 3, -1),
        (450, 1, 1)]]
    for name, lines in (("train.csv", train), ("test.csv", test)):
        with open(os.path.join(folder, name), "w") as f:
            f.write("\n".join(lines) + "\n")


def test_preprocess_raw_files(tmp_path):
    raw, out = str(tmp_path / "raw"), str(tmp_path / "out")
    _raw(raw)
    done = run_tool("datasets/Lookalike/preprocess.py", "--raw", raw, "--out", out, "--threshold", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(out, "max_idxs.json")) as f:
        max_idxs = json.load(f)["max_idxs"]
    # Ad fields are label-encoded over adFeature.csv; interest1 has 12 distinct ids -> pad id 12.
    assert max_idxs[2] == [3, 3, 2, 3, 2, 2] and max_idxs[1][0] == 12
    lookalike = importlib.import_module("models.common.datasets.lookalike")
    config = Config({"runner": {"data_cache_dir": str(tmp_path / "cache")},
                     "hyper_parameters": {"max_idxs": max_idxs, "embed_dim": 4}}, "x.yaml")

    def rows(name):  # read the way the readers do: ids checked against max_idxs
        dataset = CachedDataset([os.path.join(out, name)], config, lookalike.schema(config),
                                lookalike.LookalikeParser(), say=lambda m: None)
        return SimpleNamespace(**dataset.take(np.arange(len(dataset))))

    train = rows("train_data/train_stage1.npz")
    hot1, hot2 = rows("test_hot_data/test_hot_stage1.npz"), rows("test_hot_data/test_hot_stage2.npz")
    cold1 = rows("test_cold_data/test_cold_stage1.npz")
    train_aids, test_aids = set(train.aid), set(hot1.aid) | set(cold1.aid)
    assert len(train_aids) == 2 and len(test_aids) == 2 and not train_aids & test_aids  # 50/50 split of ads
    assert set(hot2.aid) == set(hot1.aid)
    for aid in set(hot1.aid):  # hot: more than 2 positive seeds
        assert hot1.label[hot1.aid == aid].sum() > 2
    for aid in set(cold1.aid):
        assert cold1.label[cold1.aid == aid].sum() <= 2
    assert set(np.unique(train.label)) == {0, 1}  # -1 -> 0
    # User 1's 12 interest1 ids are cut to 10, lengths recorded, empty lists fully padded.
    with np.load(os.path.join(out, "train_data", "train_stage1.npz")) as data:
        columns = {k: data[k] for k in data.files}
    everything = [columns]
    for name in ("hot", "cold"):
        for stage in (1, 2):
            with np.load(os.path.join(out, f"test_{name}_data", f"test_{name}_stage{stage}.npz")) as data:
                everything.append({k: data[k] for k in data.files})
    lengths = np.concatenate([c["interest1_length"] for c in everything])
    ids = np.concatenate([c["interest1"] for c in everything])
    assert lengths.max() == 10 and (ids[lengths == 0] == 12).all()
    # all 12 train.csv rows + the test-file rows of the 2 test tasks (4 of 8)
    assert sum(len(c["label"]) for c in everything) == 16
    check = run_tool("datasets/Lookalike/preprocess.py", "--check", out)
    assert check.returncode == 0, check.stdout + check.stderr


FOLDERS = {"train_data": ["train_stage1.npz"], "test_hot_data": ["test_hot_stage1.npz", "test_hot_stage2.npz"],
           "test_cold_data": ["test_cold_stage1.npz", "test_cold_stage2.npz"]}


def preprocess(*args):
    """datasets/Lookalike/preprocess.py's main, in this process (no interpreter start): -> exit status."""
    spec = importlib.util.spec_from_file_location("lookalike_preprocess",
                                                  os.path.join(REPO, "datasets", "Lookalike", "preprocess.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in args])


def test_outputs_carry_manifests_and_one_id_space(tmp_path, capsys):
    raw = str(tmp_path / "raw")
    _raw(raw)
    out = tmp_path / "out"
    assert preprocess("--raw", raw, "--out", out, "--threshold", "2") == 0
    side = json.loads((out / "max_idxs.json").read_text())
    assert sorted(side) == ["id_space", "max_idxs"]
    spaces = set()
    for sub, names in FOLDERS.items():
        found = read_manifest(out / sub)
        assert sorted(found["files"]) == names and sorted(os.listdir(out / sub)) == sorted(names + ["manifest.json"])
        for name in names:
            with np.load(out / sub / name) as data:
                rows = len(data["label"])
            assert found["files"][name] == {"bytes": (out / sub / name).stat().st_size, "rows": rows}
        assert found["data_set"] == "lookalike" and found["kind"].startswith("Look-alike")
        spaces.add(found["fingerprints"]["id_space"])
        assert list_data_files(str(out / sub), sub) == [str(out / sub / n) for n in names]
    assert spaces == {side["id_space"]}
    assert sum(read_manifest(out / sub)["files"][n]["rows"] for sub, names in FOLDERS.items() for n in names) == 16

    # Same raw files and options: the same bytes and id space; another seed (another task split): another.
    assert preprocess("--raw", raw, "--out", tmp_path / "again", "--threshold", "2") == 0
    for sub, names in FOLDERS.items():
        for name in names:
            assert (tmp_path / "again" / sub / name).read_bytes() == (out / sub / name).read_bytes()
    assert json.loads((tmp_path / "again" / "max_idxs.json").read_text()) == side
    assert preprocess("--raw", raw, "--out", tmp_path / "seed", "--threshold", "2", "--seed", "7") == 0
    other = json.loads((tmp_path / "seed" / "max_idxs.json").read_text())["id_space"]
    assert other != side["id_space"] and read_manifest(tmp_path / "seed" / "train_data")["fingerprints"]["id_space"] == other

    # --check tells a folder of another run, and a file its manifest does not list.
    capsys.readouterr()
    assert preprocess("--check", out) == 0
    shutil.rmtree(out / "test_cold_data")
    shutil.copytree(tmp_path / "seed" / "test_cold_data", out / "test_cold_data")
    assert preprocess("--check", out) == 2
    assert "outputs are of different runs" in capsys.readouterr().err
    shutil.rmtree(out / "test_cold_data")
    shutil.copytree(tmp_path / "again" / "test_cold_data", out / "test_cold_data")
    (out / "test_cold_data" / "notes.npz").write_bytes(b"")
    with pytest.raises(artifacts.ArtifactError, match="notes.npz"):
        list_data_files(str(out / "test_cold_data"), "runner.test_cold_data_dir")
    assert preprocess("--check", out) == 2


def test_a_second_run_is_refused_unless_replace(tmp_path, capsys):
    raw = str(tmp_path / "raw")
    _raw(raw)
    out = tmp_path / "out"
    assert preprocess("--raw", raw, "--out", out, "--threshold", "2") == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    capsys.readouterr()
    assert preprocess("--raw", raw, "--out", out, "--threshold", "1", "--seed", "5") == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and str(out / "train_data") in errors[0] and "--replace" in errors[0]
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert not [name for name in os.listdir(out) if name.startswith(".")]
    # Only the side file left of an earlier run: refused too (it would be beside other folders).
    for sub in FOLDERS:
        shutil.rmtree(out / sub)
    assert preprocess("--raw", raw, "--out", out, "--threshold", "2") == 2
    assert "max_idxs.json" in capsys.readouterr().err
    assert preprocess("--raw", raw, "--out", out, "--threshold", "1", "--seed", "5", "--replace") == 0
    side = json.loads((out / "max_idxs.json").read_text())
    assert {read_manifest(out / sub)["fingerprints"]["id_space"] for sub in FOLDERS} == {side["id_space"]}

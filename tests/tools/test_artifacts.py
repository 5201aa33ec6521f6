"""What runs hand to each other is recognised by what it says it is (models/common/artifacts.py):
data folders read through their manifests, never a temporary or foreign file; columns matched by
name; side files and id spaces checked against what the model was trained on; one writer per
output folder; the protocols' splits disjoint; exports written whole. Each test reproduces a case
that ended with exit 0 and a wrong number before."""
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from models.common.artifacts import Artifact, ArtifactError, FolderLock, read_manifest, write_manifest
from models.common.data import DataFormatError, list_data_files
from tests.conftest import DEEPFM_CONFIG, REPO, model_config, run_tool, write_criteo_like
from tests.tools.test_bad_input import assert_user_error, ok, tiny
from tests.tools.test_distributed import write_tiny_data

MMOE = os.path.join(REPO, "models", "multitask", "mmoe")
DSSM = os.path.join(REPO, "models", "recall", "dssm", "config.yaml")
METAEMB = os.path.join(REPO, "models", "rank", "metaemb")
PRETRAINED = os.path.join(REPO, "models", "recall", "pretrained_dssm")



# ---- data folders: only the data files, through the manifest when there is one -------------------
def test_a_folder_without_manifest_refuses_temporary_and_special_entries(tmp_path):
    (tmp_path / "train.txt").write_text("x\n")
    (tmp_path / ".rec_cache").mkdir()
    assert list_data_files(str(tmp_path), "runner.train_data_dir") == [str(tmp_path / "train.txt")]
    (tmp_path / "train.txt.tmp").write_text("half\n")  # what a killed writer leaves
    with pytest.raises(DataFormatError, match="train.txt.tmp is a temporary file"):
        list_data_files(str(tmp_path), "runner.train_data_dir")
    os.remove(tmp_path / "train.txt.tmp")
    (tmp_path / "more").mkdir()
    with pytest.raises(DataFormatError, match="runner.train_data_dir: .*more is a folder"):
        list_data_files(str(tmp_path), "runner.train_data_dir")
    os.rmdir(tmp_path / "more")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(DataFormatError, match="pipe is no regular file"):
        list_data_files(str(tmp_path), "runner.train_data_dir")


def test_a_folder_with_manifest_is_read_through_it(tmp_path):
    folder = tmp_path / "train"
    with Artifact(str(folder), "rows") as art:
        for name in ("a.txt", "b.txt"):
            with open(os.path.join(art.path, name), "w") as f:
                f.write("1\n")
            art.rows[name] = 1
        art.fingerprints["id_space"] = "s1"
    assert list_data_files(str(folder), "k") == [str(folder / "a.txt"), str(folder / "b.txt")]
    assert read_manifest(str(folder))["files"]["a.txt"] == {"bytes": 2, "rows": 1}
    (folder / "c.txt").write_text("2\n")  # e.g. a second run's file in another format
    with pytest.raises(ArtifactError, match="holds c.txt, which its manifest does not list"):
        list_data_files(str(folder), "runner.train_data_dir")
    os.remove(folder / "c.txt")
    (folder / "a.txt").write_text("1\n2\n")
    with pytest.raises(ArtifactError, match="a.txt has 4 bytes, its manifest says 2"):
        list_data_files(str(folder), "runner.train_data_dir")
    with pytest.raises(ArtifactError, match="already holds files"):  # never written into twice
        with Artifact(str(folder), "rows"):
            pass
    assert oct(os.stat(folder).st_mode & 0o777) != "0o700"  # the staging folder's private mode is not kept


def test_an_ali_ccp_folder_mixing_two_formats_names_both_files(tmp_path):
    from models.common.datasets import aliccp

    config = model_config(os.path.join(REPO, "models", "multitask", "esmm", "config.yaml"),
                          [f"runner.data_cache_dir={tmp_path / 'cache'}"])
    sample = list_data_files(os.path.join(REPO, "models", "multitask", "esmm", "data", "train"), "x")[0]
    (tmp_path / "d").mkdir()
    shutil.copy(sample, tmp_path / "d" / "train.txt")
    (tmp_path / "d" / "traindata.csv").write_text("click,purchase\n0,0\n")
    with pytest.raises(DataFormatError, match=r"train.txt and .*traindata.csv differ in their format"):
        aliccp.RecDataset(sorted(str(p) for p in (tmp_path / "d").iterdir()), config)


# ---- one writer per output folder ---------------------------------------------------------------
def test_a_second_training_into_a_busy_folder_stops_at_once(tmp_path):
    with FolderLock(str(tmp_path / "ckpt"), "runner.model_save_path"):
        assert_user_error(tiny(tmp_path, "runner.epochs=1"), "runner.model_save_path", "is in use by process",
                          str(tmp_path / "ckpt"))
    assert "epoch 0 done" in ok(tiny(tmp_path, "runner.epochs=1"))


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / ".lock").write_text("process 99999 on elsewhere (trainer.py, since yesterday)")
    log = ok(tiny(tmp_path, "runner.epochs=1"))
    assert "took over the lock" in log and "process 99999" in log


def test_a_failed_run_leaves_no_output_folder(tmp_path):
    assert_user_error(tiny(tmp_path, "runner.train_batch_size=1000"), "runner.train_batch_size")
    assert not (tmp_path / "ckpt").exists()


# ---- columns by name, side files and id spaces checked against the training run ------------------
def _census_copy(tmp_path, order=None, rename=None):
    """The MMoE sample's test CSV with its feature columns permuted (header and values together)."""
    frame = pd.read_csv(list_data_files(os.path.join(MMOE, "data", "test"), "x")[0])
    features = [c for c in frame.columns if c.startswith("features:")]
    if order is not None:
        frame = frame[[c for c in frame.columns if c not in features] + [features[i] for i in order]]
    if rename:
        frame = frame.rename(columns=rename)
    folder = tmp_path / f"test_{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    frame.to_csv(folder / "census_test.csv", index=False)
    return str(folder), features


def _mmoe(tmp_path, *overrides, script="tools/infer.py"):
    return run_tool(script, "-m", os.path.join(MMOE, "config.yaml"), "-o", f"runner.model_save_path={tmp_path / 'ckpt'}",
                    f"runner.data_cache_dir={tmp_path / 'cache'}", "runner.epochs=1", "runner.infer_start_epoch=0",
                    "runner.infer_end_epoch=1", *overrides)


def test_census_columns_are_matched_by_name(tmp_path):
    """A test CSV whose feature columns are in another order is read by name (the same metrics);
    a renamed or missing column is an error naming it; without the feature names (feature_dim
    only) the columns recorded with the checkpoint refuse the permuted file."""
    ok(_mmoe(tmp_path, script="tools/trainer.py"))
    same, features = _census_copy(tmp_path)
    permuted, _ = _census_copy(tmp_path, order=np.random.default_rng(0).permutation(len(features)))
    runs = []
    for folder in (same, permuted):
        out = str(tmp_path / f"out_{len(runs)}")
        ok(_mmoe(tmp_path, f"runner.test_data_dir={folder}", f"runner.infer_output_path={out}"))
        runs.append(json.load(open(os.path.join(out, "metrics.json")))["headline"])
    assert runs[0] == runs[1]
    renamed, _ = _census_copy(tmp_path, rename={features[3]: "features:nonesuch"})
    assert_user_error(_mmoe(tmp_path, f"runner.test_data_dir={renamed}"), "census_test.csv, line 1",
                      f"no column '{features[3]}'")
    # Without meta.json the names come from the training file's header, recorded in run.json.
    no_meta = ["hyper_parameters.feature_meta_path=", "hyper_parameters.feature_dim=440"]
    ok(_mmoe(tmp_path, *no_meta, f"runner.model_save_path={tmp_path / 'ckpt2'}", script="tools/trainer.py"))
    result = _mmoe(tmp_path, *no_meta, f"runner.model_save_path={tmp_path / 'ckpt2'}",
                   f"runner.test_data_dir={permuted}")
    assert_user_error(result, "runner.test_data_dir: the names of its columns, not the training data's",
                      "features component 0 is")


def _dssm(tmp_path, *overrides, script="tools/infer.py"):
    return run_tool(script, "-m", DSSM, "-o", f"runner.model_save_path={tmp_path / 'ckpt'}",
                    f"runner.data_cache_dir={tmp_path / 'cache'}", "runner.epochs=1", "runner.infer_start_epoch=0",
                    "runner.infer_end_epoch=1", *overrides)


def test_a_side_file_of_another_data_set_or_another_similarity_is_refused(tmp_path):
    """dataset.json is fingerprinted with the checkpoints: evaluating (or resuming) with another
    one - compatible shapes, other counts - is refused naming the key; so is evaluating with
    another similarity than the model was trained with."""
    ok(_dssm(tmp_path, script="tools/trainer.py"))
    info = json.load(open(os.path.join(REPO, "datasets", "movielens", "sample", "dataset.json")))
    info["item_count"] = list(reversed(info["item_count"]))
    (tmp_path / "other.json").write_text(json.dumps(info))
    other = f"hyper_parameters.dataset_info_path={tmp_path / 'other.json'}"
    assert_user_error(_dssm(tmp_path, other), "hyper_parameters.dataset_info_path: not the file the model was "
                                               "trained with")
    assert_user_error(_dssm(tmp_path, other, "runner.epochs=2", "runner.resume=true", script="tools/trainer.py"),
                      "runner.resume", "hyper_parameters.dataset_info_path")
    # A key the scores depend on (declared scoring) differs: refused; another (top_k) differs: a note.
    assert_user_error(_dssm(tmp_path, "hyper_parameters.similarity=dot"), "hyper_parameters.similarity: 'cosine' in "
                      "the saved run, 'dot' now; the model's scores depend on it")
    assert "note: hyper_parameters.retrieval.top_k" in ok(_dssm(tmp_path, "hyper_parameters.retrieval.top_k=[5]"))


def test_test_rows_of_another_id_space_are_refused(tmp_path):
    """Train and test folders whose manifests record different id spaces (two preprocessing runs)."""
    for name, space in (("train", "run-1"), ("test", "run-2"), ("test_same", "run-1")):
        write_criteo_like(tmp_path / name, 200, seed=len(name))
        write_manifest(str(tmp_path / name), "criteo rows", fingerprints={"id_space": space})
    common = ["-o", f"runner.train_data_dir={tmp_path / 'train'}", f"runner.model_save_path={tmp_path / 'ckpt'}",
              f"runner.data_cache_dir={tmp_path / 'cache'}", "hyper_parameters.sparse_feature_number=1000",
              "hyper_parameters.fc_sizes=[8]", "runner.epochs=1", "runner.infer_start_epoch=0", "runner.infer_end_epoch=1"]
    ok(run_tool("tools/trainer.py", "-m", DEEPFM_CONFIG, *common))
    assert_user_error(run_tool("tools/infer.py", "-m", DEEPFM_CONFIG, *common, f"runner.test_data_dir={tmp_path / 'test'}"),
                      "runner.test_data_dir: its id space (manifest.json: another preprocessing run), not the training "
                      "data's: 'run-2', in training 'run-1'")
    (tmp_path / "ckpt" / ".infer.staging-killed").mkdir()  # what an infer killed half-way leaves
    ok(run_tool("tools/infer.py", "-m", DEEPFM_CONFIG, *common, f"runner.test_data_dir={tmp_path / 'test_same'}"))
    assert not (tmp_path / "ckpt" / ".infer.staging-killed").exists()
    cache = sorted(p.name for p in (tmp_path / "cache").rglob("*"))
    assert any(name.endswith(".npy") for name in cache) and not [n for n in cache if n.startswith(".")]  # no lock files


# ---- the protocols' splits and what exists ---------------------------------------------------------
def test_retrieval_top_k_above_the_catalog_is_refused(tmp_path):
    assert_user_error(_dssm(tmp_path, "hyper_parameters.retrieval.top_k=[10,500]"),
                      "hyper_parameters.retrieval.top_k: K = 500 is more than the 400 items")


def test_a_held_out_item_among_the_users_training_rows_is_refused(tmp_path):
    sample = os.path.join(REPO, "datasets", "movielens", "sample")
    shutil.copytree(os.path.join(sample, "train"), tmp_path / "train")
    test_line = open(os.path.join(sample, "test", "test.txt")).readline()
    with open(tmp_path / "train" / "train.txt", "a") as f:
        f.write(test_line)  # the first test user's held-out row, also trained on
    result = _dssm(tmp_path, f"runner.train_data_dir={tmp_path / 'train'}")
    assert_user_error(result, "test.txt, row 1: the user's held-out item is one of their training rows' items")


def test_the_padding_id_as_a_target_is_refused(tmp_path):
    from models.common.datasets import movielens

    config = model_config(DSSM, [f"runner.data_cache_dir={tmp_path / 'cache'}"])
    line = open(os.path.join(REPO, "datasets", "movielens", "sample", "test", "test.txt")).readline().split()
    (tmp_path / "rows.txt").write_text(" ".join(line[:-1] + ["item_id:0"]) + "\n")
    with pytest.raises(DataFormatError, match="rows.txt, row 1: item_id 0 is the padding id"):
        movielens.RecDataset([str(tmp_path / "rows.txt")], config)


def test_metaemb_new_items_in_pre_training_are_refused(tmp_path):
    """The cold baseline is not cold when the new items' rows were pre-trained on (AUC 0.758
    instead of 0.653 on ml-100k): refused before any work."""
    data = tmp_path / "sample"
    shutil.copytree(os.path.join(METAEMB, "data", "sample"), data)
    pretrain, test = data / "pretrain" / "pretrain.npz", data / "test" / "test.npz"
    with np.load(pretrain) as a, np.load(test) as b:
        merged = {k: np.concatenate([a[k], b[k][:5]]) for k in a.files}
    np.savez(pretrain, **merged)
    result = run_tool("tools/infer.py", "-m", os.path.join(METAEMB, "config.yaml"), "-o",
                      f"runner.train_data_dir={data / 'pretrain'}", f"runner.test_data_dir={data / 'test'}",
                      f"runner.meta_data_dir={data / 'meta'}", f"runner.warm_data_dir={data / 'warm'}",
                      f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.data_cache_dir={tmp_path / 'cache'}")
    assert_user_error(result, "new items' set", "is in runner.train_data_dir")


def test_esmm_purchase_without_click_is_refused(tmp_path):
    from models.common.datasets import aliccp

    config = model_config(os.path.join(REPO, "models", "multitask", "esmm", "config.yaml"),
                          [f"runner.data_cache_dir={tmp_path / 'cache'}"])
    sample = list_data_files(os.path.join(REPO, "models", "multitask", "esmm", "data", "test"), "x")[0]
    lines = open(sample).read().splitlines()
    fields = lines[2].split(",")
    fields[1], fields[2] = "0", "1"  # click 0, purchase 1
    (tmp_path / "rows.txt").write_text("\n".join(lines[:2] + [",".join(fields)]) + "\n")
    with pytest.raises(DataFormatError, match="rows.txt, row 3: purchase 1 without a click"):
        aliccp.RecDataset([str(tmp_path / "rows.txt")], config)


# ---- exports ------------------------------------------------------------------------------------
def test_an_export_is_written_whole_and_never_over_another(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    ok(run_tool("tools/trainer.py", "-m", os.path.join(PRETRAINED, "config.yaml"), "-o", f"runner.model_save_path={ckpt}",
                "runner.epochs=1"))
    vectors = os.path.join(PRETRAINED, "data", "vectors")
    export = ["models/recall/pretrained_dssm/export.py", "-m", os.path.join(PRETRAINED, "config.yaml"), "-o",
              f"runner.model_save_path={ckpt}", "--out", str(tmp_path / "export")]
    ok(run_tool(*export, "--vectors", vectors))
    manifest = read_manifest(str(tmp_path / "export"))
    assert manifest["files"]["item_keys.npy"]["rows"] == len(np.loadtxt(os.path.join(vectors, "items.txt")))
    assert_user_error(run_tool(*export, "--vectors", vectors), "already holds files", "--replace")
    # another score function than the model was trained with: refused before anything is written
    assert_user_error(run_tool(*export, "--vectors", vectors, "--replace", "-o", "hyper_parameters.score=dot"),
                      "hyper_parameters.score: 'product' in the saved run, 'dot' now; the model's scores depend on it")
    assert read_manifest(str(tmp_path / "export")) == manifest
    users_only = tmp_path / "users_only"
    users_only.mkdir()
    for name in ("users.npy", "users.txt"):
        shutil.copy(os.path.join(vectors, name), users_only / name)
    ok(run_tool(*export, "--vectors", str(users_only), "--replace"))
    assert not (tmp_path / "export" / "item_keys.npy").exists()  # nothing of the other export survives
    result = run_tool("models/recall/pretrained_dssm/retrieve.py", "--export", str(tmp_path / "export"), "--top-n", "5")
    assert result.returncode != 0 and "has no item_keys.npy" in result.stderr
    ids = np.loadtxt(os.path.join(vectors, "items.txt"), dtype=np.int64)
    ids[1] = ids[0]
    dup = tmp_path / "dup"
    dup.mkdir()
    shutil.copy(os.path.join(vectors, "items.npy"), dup / "items.npy")
    np.savetxt(dup / "items.txt", ids, fmt="%d")
    assert_user_error(run_tool(*export, "--vectors", str(dup), "--replace"), "items.txt: id", "appears 2 times")


def test_retrieve_checks_top_n_and_outputs_before_work(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    ok(run_tool("tools/trainer.py", "-m", os.path.join(PRETRAINED, "config.yaml"), "-o", f"runner.model_save_path={ckpt}",
                "runner.epochs=1"))
    ok(run_tool("models/recall/pretrained_dssm/export.py", "-m", os.path.join(PRETRAINED, "config.yaml"), "-o",
                f"runner.model_save_path={ckpt}", "--out", str(tmp_path / "export"), "--vectors",
                os.path.join(PRETRAINED, "data", "vectors")))
    retrieve = ["models/recall/pretrained_dssm/retrieve.py", "--export", str(tmp_path / "export")]
    for top_n in ("0", "100000"):
        result = run_tool(*retrieve, "--top-n", top_n)
        assert result.returncode != 0 and "--top-n must be 1 .." in result.stderr and "Traceback" not in result.stderr
    result = run_tool(*retrieve, "--test", "x.csv", "--train", "y.csv", "--json", "/nonexistent/m.json")
    assert result.returncode != 0 and "cannot write into /nonexistent" in result.stderr


# ---- asking for what a run would ignore, or for nothing ---------------------------------------------
ESMM = os.path.join(REPO, "models", "multitask", "esmm", "config.yaml")


@pytest.mark.parametrize("config, overrides, message", [
    (os.path.join(REPO, "models", "recall", "youtube_sbc", "config.yaml"), ["hyper_parameters.neg_num=5"],
     "'hyper_parameters.neg_num' is not used with in_batch negatives"),
    (DEEPFM_CONFIG, ["runner.epochs="], "override runner.epochs: an empty value would unset it, but it is required"),
    (DEEPFM_CONFIG, ["runner.infer_start_epoch=2", "runner.infer_end_epoch=1"],
     "runner.infer_end_epoch (1) is exclusive and must be greater than runner.infer_start_epoch (2)"),
    (ESMM, ["hyper_parameters.weight_ctr=0", "hyper_parameters.weight_ctcvr=0"], "every task's loss weight is 0"),
    (os.path.join(MMOE, "config.yaml"), ["hyper_parameters.tasks=[{name: income, label: income, type: binary, "
                                         "weight: 0}]"], "every task's loss weight is 0 (income: 0)"),
], ids=["neg_num-in_batch", "empty-override", "infer-epochs", "esmm-weights", "mmoe-weights"])
def test_a_config_whose_value_would_be_ignored_or_train_nothing_is_refused(config, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        model_config(config, overrides)


def test_a_config_copied_out_of_its_model_folder_says_so(tmp_path):
    shutil.copy(DEEPFM_CONFIG, tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match="a config is read with the model folder it lies in.*copy the whole"):
        model_config(str(tmp_path / "config.yaml"))


def test_a_folder_of_one_empty_file_says_it_holds_no_rows(tmp_path):
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "part-0").write_text("")
    result = run_tool("tools/trainer.py", "-m", DEEPFM_CONFIG, "-o", f"runner.train_data_dir={tmp_path / 'blank'}",
                      f"runner.model_save_path={tmp_path / 'ckpt'}", f"runner.data_cache_dir={tmp_path / 'cache'}")
    assert_user_error(result, "runner.train_data_dir: the data holds no rows")


def test_an_auc_undefined_on_one_class_test_rows_is_explained(tmp_path):
    ok(tiny(tmp_path, "runner.epochs=1"))
    write_tiny_data(tmp_path / "one_class", 40)
    for name in ("a.csv", "b.csv"):
        frame = pd.read_csv(tmp_path / "one_class" / name)
        frame["label"] = 0
        frame.to_csv(tmp_path / "one_class" / name, index=False)
    log = ok(tiny(tmp_path, "runner.epochs=1", f"runner.test_data_dir={tmp_path / 'one_class'}",
                  "runner.infer_start_epoch=0", "runner.infer_end_epoch=1",
                  f"runner.infer_output_path={tmp_path / 'out'}", script="tools/infer.py"))
    assert "note: auc undefined on this data (nan; null in metrics.json): an AUC needs both labels" in log
    assert json.load(open(tmp_path / "out" / "metrics.json"))["headline"]["auc"] is None


def test_top_k_search_refuses_k_outside_the_catalog():
    from models.common.retrieval import search

    items, users = np.eye(3, dtype=np.float32), np.ones((2, 3), dtype=np.float32)
    assert search(items, users, 3)[0].shape == (2, 3)
    for k in (0, 4):
        with pytest.raises(ValueError, match="k must be 1 .. the number of items"):
            search(items, users, k)

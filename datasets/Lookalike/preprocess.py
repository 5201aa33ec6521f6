"""Build MetaHeac's train / hot / cold test files from the raw Tencent Ad 2018 look-alike data,
or check prepared files.

    python datasets/Lookalike/preprocess.py --raw DIR [--out datasets/Lookalike] [--test-file test.csv]
        [--split-by seeds|candidates] [--threshold N] [--seed 2021]
    python datasets/Lookalike/preprocess.py --check datasets/Lookalike

Raw files in DIR: adFeature.csv (aid + 7 ad columns), userFeature.data (``uid 1|age 4|kw1 5 8|...``
lines), train.csv (aid,uid,label with label 1/-1) and a labelled test file of the same columns.

Protocol: ads (tasks) of train.csv are split 50/50 (seeded) into training and test tasks. A
training task's rows are its train.csv rows (train_stage1). A test task's stage 1 (seed users,
for fine-tuning) is its train.csv rows and its stage 2 (candidates) its rows of the labelled test
file. Test tasks are hot or cold by a threshold: by default, as the official MetaHeac code, a task
with at most 2000 positive seeds is cold (``--split-by candidates --threshold 4000`` gives the
rule PaddleRec's readme describes: cold = at most 4000 candidates).

Every field is label-encoded (sorted values; multi-hot lists cut to 10 / 5 ids and padded with a
reserved id = the vocabulary size). The largest id per field is printed and written to
max_idxs.json: put it in config_bigdata.yaml's hyper_parameters.max_idxs. Output is npz (columns
as in models/common/datasets/lookalike.py), never pickle.
"""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from models.common.datasets.lookalike import AD, COLUMNS, DYNAMIC, SEQ_LENS, STATIC  # noqa: E402  (the files' columns)

MISSING = "-1"  # code of a user without a value for a static field


def read_pairs(path):
    frame = pd.read_csv(path, dtype={"aid": np.int64, "uid": np.int64, "label": np.int64})
    if list(frame.columns[:3]) != ["aid", "uid", "label"]:
        sys.exit(f"error: {path}: expected columns aid,uid,label, found {list(frame.columns)}")
    frame["label"] = (frame["label"] == 1).astype(np.int64)  # raw labels are 1 / -1
    return frame[["aid", "uid", "label"]]


def read_users(path, wanted, chunk_rows=500_000):
    """{uid: {field: 'value string'}} as a DataFrame indexed by uid, for the uids in ``wanted``.
    Vectorised per chunk: split on '|', then on the first space."""
    keep = set(STATIC + DYNAMIC)
    parts = []
    for chunk in pd.read_csv(path, header=None, names=["line"], sep="\x01", dtype=str, chunksize=chunk_rows):
        lines = chunk["line"]
        uid = lines.str.extract(r"^uid (\d+)", expand=False).astype(np.int64)
        lines = lines[uid.isin(wanted).to_numpy()]
        if lines.empty:
            continue
        items = lines.str.split("|").explode()
        pairs = items.str.split(" ", n=1, expand=True)
        pairs.columns = ["field", "value"]
        pairs["uid"] = pairs.groupby(level=0)["value"].transform("first").astype(np.int64)
        pairs = pairs[pairs["field"].isin(keep)]
        parts.append(pairs.pivot(index="uid", columns="field", values="value"))
    users = pd.concat(parts) if parts else pd.DataFrame()
    return users.reindex(columns=STATIC + DYNAMIC)


def encode_users(users):
    """Label-encoded user columns and the largest id of each field."""
    out, max_static, max_dynamic = {}, [], []
    for field in STATIC:
        values = users[field].fillna(MISSING).to_numpy()
        vocab, codes = np.unique(values, return_inverse=True)
        out[field] = codes.astype(np.int64)
        max_static.append(len(vocab) - 1)
    for field, width in zip(DYNAMIC, SEQ_LENS):
        lists = users[field].fillna("").str.split()
        items = lists.explode().dropna()  # one row per (user, id), index = user position
        row = np.asarray(users.index.get_indexer(items.index)) if len(items) else np.zeros(0, np.int64)
        position = items.groupby(level=0).cumcount().to_numpy()
        vocab = np.unique(items.to_numpy().astype(str))
        pad = len(vocab)
        ids = np.full((len(users), width), pad, np.int64)
        keep = position < width  # lists are cut to the published width
        ids[row[keep], position[keep]] = np.searchsorted(vocab, items.to_numpy().astype(str)[keep])
        lengths = lists.str.len().fillna(0).clip(upper=width).to_numpy().astype(np.int64)
        out[field], out[field + "_length"] = ids, lengths
        max_dynamic.append(pad)
    return out, max_static, max_dynamic


def encode_ads(ads):
    out, max_ad = {}, []
    for field in AD:
        vocab, codes = np.unique(ads[field].astype(str).to_numpy(), return_inverse=True)
        out[field] = codes.astype(np.int64)
        max_ad.append(len(vocab) - 1)
    return out, max_ad


def assemble(pairs, user_index, user_cols, ad_index, ad_cols):
    u = user_index.get_indexer(pairs["uid"])
    a = ad_index.get_indexer(pairs["aid"])
    if (u < 0).any() or (a < 0).any():
        sys.exit(f"error: {int((u < 0).sum())} rows have a uid missing from userFeature.data, "
                 f"{int((a < 0).sum())} an aid missing from adFeature.csv")
    cols = {"label": pairs["label"].to_numpy(), "aid": pairs["aid"].to_numpy()}
    cols.update({k: v[u] for k, v in user_cols.items()})
    cols.update({k: v[a] for k, v in ad_cols.items()})
    return {k: cols[k] for k in COLUMNS}


def write(path, cols):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **cols)
    print(f"wrote {path}: {len(cols['label'])} rows, {int(cols['label'].sum())} positives, "
          f"{len(np.unique(cols['aid']))} tasks")


def build(raw, out, test_file, split_by, threshold, seed):
    train = read_pairs(os.path.join(raw, "train.csv"))
    test = read_pairs(os.path.join(raw, test_file))
    ads = pd.read_csv(os.path.join(raw, "adFeature.csv"))
    wanted = pd.Index(np.unique(np.concatenate([train["uid"], test["uid"]])))
    users = read_users(os.path.join(raw, "userFeature.data"), wanted)
    user_cols, max_static, max_dynamic = encode_users(users)
    ad_cols, max_ad = encode_ads(ads)
    user_index, ad_index = pd.Index(users.index), pd.Index(ads["aid"])

    aids = np.unique(train["aid"])
    shuffled = np.random.default_rng(seed).permutation(aids)
    train_aids, test_aids = np.sort(shuffled[: len(aids) // 2]), np.sort(shuffled[len(aids) // 2:])
    write(os.path.join(out, "train_data", "train_stage1.npz"),
          assemble(train[train["aid"].isin(train_aids)], user_index, user_cols, ad_index, ad_cols))
    stage1 = train[train["aid"].isin(test_aids)]
    stage2 = test[test["aid"].isin(test_aids)]
    if split_by == "seeds":
        size = stage1.groupby("aid")["label"].sum()
    else:
        size = stage2.groupby("aid").size()
    size = size.reindex(test_aids, fill_value=0)
    cold = set(size.index[size.to_numpy() <= threshold])
    for name, chosen in (("hot", [a for a in test_aids if a not in cold]), ("cold", sorted(cold))):
        for stage, frame in ((1, stage1), (2, stage2)):
            write(os.path.join(out, f"test_{name}_data", f"test_{name}_stage{stage}.npz"),
                  assemble(frame[frame["aid"].isin(chosen)], user_index, user_cols, ad_index, ad_cols))
    max_idxs = [max_static, max_dynamic, max_ad]
    with open(os.path.join(out, "max_idxs.json"), "w", encoding="utf-8") as f:
        json.dump(max_idxs, f)
    print(f"hyper_parameters.max_idxs for these files: {json.dumps(max_idxs)}")
    return max_idxs


def check(folder):
    """Every expected file is present with every column (pickles: trusted sources only)."""
    expected = {"train_data": ["train_stage1"], "test_hot_data": ["test_hot_stage1", "test_hot_stage2"],
                "test_cold_data": ["test_cold_stage1", "test_cold_stage2"]}
    for sub, names in expected.items():
        for name in names:
            found = [os.path.join(folder, sub, name + ext) for ext in (".npz", ".pkl")
                     if os.path.isfile(os.path.join(folder, sub, name + ext))]
            if not found:
                sys.exit(f"error: {os.path.join(folder, sub, name)}.npz|.pkl is missing")
            path = found[0]
            if path.endswith(".npz"):
                with np.load(path, allow_pickle=False) as data:
                    columns, rows = data.files, len(data["label"])
            else:
                frame = pd.read_pickle(path)
                columns, rows = list(frame.columns), len(frame)
            missing = [c for c in COLUMNS if c not in columns]
            if missing:
                sys.exit(f"error: {path}: missing column(s) {missing}")
            print(f"ok {path}: {rows} rows")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--raw", help="folder with adFeature.csv, userFeature.data, train.csv and the test file")
    group.add_argument("--check", help="folder with train_data/, test_hot_data/, test_cold_data/")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--test-file", default="test.csv", help="labelled test file in --raw (aid,uid,label)")
    parser.add_argument("--split-by", choices=["seeds", "candidates"], default="seeds")
    parser.add_argument("--threshold", type=int, default=2000, help="a test task at or below it is cold")
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args(argv)
    if args.check:
        return check(args.check)
    return build(args.raw, args.out, args.test_file, args.split_by, args.threshold, args.seed)


if __name__ == "__main__":
    main()

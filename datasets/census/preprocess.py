#!/usr/bin/env python3
"""UCI census-income (KDD) -> the columnar CSV the multi-task models read (models/common/datasets/census.py).

    python datasets/census/preprocess.py --raw DIR --out OUT [--seed 2021] [--test-fraction 0.2]

DIR holds ``census-income.data`` (and, for the official split, ``census-income.test``): 42
comma+space separated fields per row, no header. Output:

    OUT/train_data/census_train.csv, OUT/test_data/census_test.csv
        header: income,marital,features:<name>,...   then one row per person
    OUT/meta.json   feature_dim, feature names, numeric means/stds, row and label counts

As the MMoE paper (Ma et al., KDD 2018) and PaddleRec use it: label ``income`` = income above
50K ("50000+."), label ``marital`` = marital status "Never married"; the other columns are
features - categoricals one-hot (categories seen in the training split, sorted; unseen ones in
test are all-zero), the 7 continuous columns standardised with the training split's mean and
standard deviation. The instance weight (column 25) is a survey sampling weight, not an
attribute of the person (UCI: "should not be used in the classifiers"): it is dropped.
Neither label nor anything computed from a label is a feature.

Split: census-income.test when DIR has it (the official train/test files), else a seeded
permutation of census-income.data (``--test-fraction`` to test). Every row must have 42 fields
and known label values: an error names file and line.

train_data and test_data are artifacts (models/common/artifacts.py): each written into a hidden
staging folder beside it and renamed into place with a ``manifest.json`` (its CSV with bytes and
rows; ``fingerprints.id_space``, a digest of the feature names, the numeric statistics and the
split), and meta.json, written last and atomically, carries the same ``id_space``: a crash never
leaves half output under the final names, and a consumer can tell which folders and meta.json
belong together. An output that already exists is refused (exit 2) unless ``--replace`` is given;
one run at a time writes into OUT, and the leftovers of a killed run are removed.
"""
import argparse
import io
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from models.common.artifacts import ArtifactError, fingerprint, run_outputs, write_json  # noqa: E402
from models.common.datasets.census import FEATURES, LABELS  # noqa: E402  (the columns the readers read)

COLUMNS = [
    "age", "class of worker", "detailed industry recode", "detailed occupation recode", "education",
    "wage per hour", "enroll in edu inst last wk", "marital stat", "major industry code",
    "major occupation code", "race", "hispanic origin", "sex", "member of a labor union",
    "reason for unemployment", "full or part time employment stat", "capital gains", "capital losses",
    "dividends from stocks", "tax filer stat", "region of previous residence", "state of previous residence",
    "detailed household and family stat", "detailed household summary in household", "instance weight",
    "migration code-change in msa", "migration code-change in reg", "migration code-move within reg",
    "live in this house 1 year ago", "migration prev res in sunbelt", "num persons worked for employer",
    "family members under 18", "country of birth father", "country of birth mother", "country of birth self",
    "citizenship", "own business or self employed", "fill inc questionnaire for veteran's admin",
    "veterans benefits", "weeks worked in year", "year", "income"]
NUMERIC = ["age", "wage per hour", "capital gains", "capital losses", "dividends from stocks",
           "num persons worked for employer", "weeks worked in year"]
DROPPED = ["instance weight"]
INCOME_VALUES = {"- 50000.": 0, "50000+.": 1}
NEVER_MARRIED = "Never married"
FULL_ROWS = {"census-income.data": 199523, "census-income.test": 99762}


class RawDataError(ValueError):
    pass


def read_raw(path, shown=None):
    """The raw file as a DataFrame of strings (42 named columns); a bad row names its line, in the
    file ``shown`` (what the user gave: run.sh unpacks into a temporary folder) or the link's target."""
    with open(path, "rb") as f:
        raw = f.read()
    path = shown or os.path.realpath(path)
    a = np.frombuffer(raw, dtype=np.uint8)
    newline = np.flatnonzero(a == 10)
    ends = np.r_[newline, len(a)] if (len(a) and a[-1] != 10) else newline
    commas = np.bincount(np.searchsorted(ends, np.flatnonzero(a == 44)), minlength=len(ends))
    visible = np.bincount(np.searchsorted(ends, np.flatnonzero(a > 32)), minlength=len(ends))
    rows = np.flatnonzero(visible > 0)
    bad = rows[commas[rows] != len(COLUMNS) - 1]
    if len(bad):
        raise RawDataError(f"{path}, line {bad[0] + 1}: expected {len(COLUMNS)} comma-separated fields, "
                           f"found {commas[bad[0]] + 1}")
    frame = pd.read_csv(io.BytesIO(raw), header=None, names=COLUMNS, dtype=str, sep=",", skipinitialspace=True,
                        keep_default_na=False, skip_blank_lines=True, engine="c")
    frame = frame.apply(lambda c: c.str.strip())
    frame.index = rows + 1  # line numbers
    income = frame["income"].map(INCOME_VALUES)
    if income.isna().any():
        line = income.index[income.isna().to_numpy()][0]
        raise RawDataError(f"{path}, line {line}: income is {frame.at[line, 'income']!r}, "
                           f"expected one of {sorted(INCOME_VALUES)}")
    for name in NUMERIC:
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.isna().any() or not np.isfinite(values.to_numpy()).all():
            line = values.index[~np.isfinite(values.fillna(np.nan).to_numpy())][0]
            raise RawDataError(f"{path}, line {line}: {name} is {frame.at[line, name]!r}, expected a number")
    return frame


def labels(frame):
    income, marital = LABELS
    return pd.DataFrame({income: frame["income"].map(INCOME_VALUES).astype(np.int64),
                         marital: (frame["marital stat"] == NEVER_MARRIED).astype(np.int64)})


def categorical_columns():
    return [c for c in COLUMNS if c not in NUMERIC and c not in DROPPED and c not in ("income", "marital stat")]


def fit(train):
    """Feature layout and statistics from the training split only."""
    stats = {c: (float(pd.to_numeric(train[c]).mean()), float(pd.to_numeric(train[c]).std(ddof=0)) or 1.0)
             for c in NUMERIC}
    categories = {c: sorted(train[c].unique().tolist()) for c in categorical_columns()}
    names = [f"{FEATURES}:{c}" for c in NUMERIC] + [f"{FEATURES}:{c}={v}" for c in categorical_columns()
                                                  for v in categories[c]]
    for name in names:
        if "," in name or "\n" in name:
            raise RawDataError(f"feature name {name!r} cannot be a CSV header name")
    return stats, categories, names


def transform(frame, stats, categories):
    """[rows, feature_dim] float matrix in the layout of ``fit``'s names."""
    parts = [((pd.to_numeric(frame[c]).to_numpy(np.float64) - m) / s)[:, None] for c, (m, s) in stats.items()]
    for c in categorical_columns():
        codes = pd.Index(categories[c]).get_indexer(frame[c])  # -1: unseen in training
        onehot = np.zeros((len(frame), len(categories[c])))
        seen = codes >= 0
        onehot[np.flatnonzero(seen), codes[seen]] = 1.0
        parts.append(onehot)
    return np.concatenate(parts, axis=1)


def write_csv(path, part, stats, categories, names, chunk_rows=20000):
    """Labels and features of ``part``, transformed and written ``chunk_rows`` rows at a time
    (the full training split is 199,523 rows x ~500 columns: never one float matrix)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        for start in range(0, max(len(part), 1), chunk_rows):
            rows = part.iloc[start:start + chunk_rows]
            y = labels(rows)
            frame = pd.DataFrame(transform(rows, stats, categories), columns=names)
            frame.insert(0, "marital", y["marital"].to_numpy())
            frame.insert(0, "income", y["income"].to_numpy())
            frame.to_csv(f, index=False, header=start == 0, float_format="%.6g", lineterminator="\n")


def split(frame, seed, fraction):
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = int(round(len(frame) * fraction))
    return frame.iloc[np.sort(order[n_test:])], frame.iloc[np.sort(order[:n_test])]


def read_and_split(args):
    """(train, test, how the split was made) from the raw folder."""
    origins = dict(o.split("=", 1) for o in args.origin)
    frame = read_raw(os.path.join(args.raw, "census-income.data"), origins.get("census-income.data"))
    test_file = os.path.join(args.raw, "census-income.test")
    if os.path.isfile(test_file):
        return frame, read_raw(test_file, origins.get("census-income.test")), "official census-income.test"
    if not 0 < args.test_fraction < 1:
        raise RawDataError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    train, test = split(frame, args.seed, args.test_fraction)
    return train, test, f"seeded split of census-income.data (seed {args.seed}, test fraction {args.test_fraction})"


def preprocess(args):
    """Write OUT/train_data, OUT/test_data (artifacts) and then OUT/meta.json; return meta."""
    out = os.path.abspath(args.out)
    meta_path = os.path.join(out, "meta.json")
    specs = {f"{name}_data": {"kind": f"census {name} split (columnar CSV)", "split": name} for name in ("train", "test")}
    with run_outputs(out, specs, ["meta.json"], args.replace, data_set="census") as arts:
        folders = {name: arts[f"{name}_data"] for name in ("train", "test")}
        train, test, how = read_and_split(args)
        stats, categories, names = fit(train)
        id_space = fingerprint({"format": "census columnar CSV", "feature_names": names, "numeric_mean_std": stats,
                                "split": how})
        counts = {}
        for name, part in (("train", train), ("test", test)):
            y = labels(part)
            write_csv(os.path.join(folders[name].path, f"census_{name}.csv"), part, stats, categories, names)
            folders[name].rows[f"census_{name}.csv"] = len(part)
            folders[name].fingerprints["id_space"] = id_space
            folders[name].about["feature_dim"] = len(names)
            counts[name] = {"rows": len(part), "income": int(y["income"].sum()), "marital": int(y["marital"].sum())}
    meta = {"id_space": id_space, "feature_dim": len(names), "split": how, "counts": counts, "feature_names": names,
            "numeric_mean_std": stats, "dropped": DROPPED}
    write_json(meta_path, meta)  # last: it describes the folders now in place
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="folder with census-income.data (and census-income.test)")
    parser.add_argument("--out", required=True, help="output parent folder")
    parser.add_argument("--seed", type=int, default=2021, help="split seed (without census-income.test)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--replace", action="store_true",
                        help="replace the outputs of an earlier run (without it, existing outputs are refused)")
    parser.add_argument("--origin", action="append", default=[], metavar="NAME=WHAT",
                        help="name the raw file NAME as WHAT in messages (run.sh: the archive it was unpacked from)")
    args = parser.parse_args(argv)
    if any("=" not in o for o in args.origin):
        parser.error("--origin takes NAME=WHAT")
    data = os.path.join(args.raw, "census-income.data")
    if not os.path.isfile(data):
        print(f"preprocess.py: error: {data} does not exist", file=sys.stderr)
        return 2
    try:
        meta = preprocess(args)
    except (RawDataError, ArtifactError) as error:
        print(f"preprocess.py: error: {error}", file=sys.stderr)
        return 2
    counts, how, dim = meta["counts"], meta["split"], meta["feature_dim"]
    for name, c in counts.items():
        print(f"{name}: {c['rows']} rows, income>50K: {c['income']}, never married: {c['marital']}")
    print(f"split: {how}")
    print(f"feature_dim: {dim}  (set -o hyper_parameters.feature_dim={dim} if your config differs)")
    print(f"id space {meta['id_space']}; wrote {args.out}/train_data, {args.out}/test_data, {args.out}/meta.json")
    for file, expected in FULL_ROWS.items():
        got = counts["train"]["rows"] if file.endswith(".data") and how.startswith("official") else None
        if got is not None and got != expected:
            print(f"note: {file} has {got} rows, the full UCI file has {expected}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

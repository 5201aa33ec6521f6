"""Write MetaEmb's synthetic sample: MovieLens-shaped tables from a hidden model, split exactly as
the real data (datasets/movielens/preprocess_metaemb.py: same encoding, same split code).

    python models/rank/metaemb/data/make_sample.py            # rewrites data/sample/
    python models/rank/metaemb/data/make_sample.py --out DIR  # somewhere else (same arrays)

The hidden model makes the item features predictive of the ID embedding, so the generator has
something to learn:

    v_item = mean of its genres' vectors + its decade's vector + mean of its title words' vectors
             + NOISE * own noise                  (what an ID embedding should capture)
    u_user = a vector per user (+ a small effect of gender and age bucket)
    click  ~ Bernoulli(sigmoid(SCALE * u_user . v_item + item bias + BIAS)); rating 5 if click else 2

Items get rating counts from three bands: old (more than N_OLD), new (N_MIN < count <= N_OLD) and a
few too rare to use. Users rate distinct items. Deterministic: one seeded numpy generator. The
files are written into a temporary folder, then each renamed into place (no manifest and no
id_space, unlike preprocess_metaemb.py's output: the shipped sample stays as it is).
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE)))))

from datasets.movielens import preprocess_metaemb as pre  # noqa: E402
from datasets.movielens.output import copy_files  # noqa: E402
from datasets.movielens.raw import ML100K_GENRES  # noqa: E402

SEED = 20190721
USERS, OLD_ITEMS, NEW_ITEMS, RARE_ITEMS = 150, 150, 100, 20
N_OLD, N_MIN, K = 40, 20, 5  # thresholds of this sample (sample config); ml-100k: 100, 40, 10
DIM, NOISE, SCALE, BIAS = 6, 0.3, 2.5, 0.0
WORDS = [f"w{i}" for i in range(60)]
OCCUPATIONS = ["artist", "doctor", "engineer", "librarian", "student", "writer"]


def tables(rng):
    genre_vec = rng.normal(size=(len(ML100K_GENRES), DIM))
    decade_vec = rng.normal(size=(6, DIM)) * 0.5
    word_vec = rng.normal(size=(len(WORDS), DIM)) * 0.7
    n_items = OLD_ITEMS + NEW_ITEMS + RARE_ITEMS
    items, item_vec = [], np.zeros((n_items, DIM))
    for i in range(n_items):
        genres = sorted(rng.choice(np.arange(1, len(ML100K_GENRES)), size=rng.integers(1, 4), replace=False))
        decade = int(rng.integers(0, 6))
        year = 1950 + 10 * decade + int(rng.integers(0, 10))
        words = rng.choice(len(WORDS), size=rng.integers(1, 5), replace=False)
        item_vec[i] = (genre_vec[genres].mean(0) + decade_vec[decade] + word_vec[words].mean(0)
                       + NOISE * rng.normal(size=DIM))
        items.append({"item_id": i + 1, "title": " ".join(WORDS[w] for w in words), "year": year,
                      "genres": tuple(ML100K_GENRES[g] for g in genres)})
    items = pd.DataFrame(items)
    ages = rng.integers(12, 70, size=USERS)
    genders = np.where(rng.random(USERS) < 0.3, "F", "M")
    users = pd.DataFrame({"user_id": np.arange(1, USERS + 1), "gender": genders, "age": ages,
                          "occupation": [OCCUPATIONS[j] for j in rng.integers(0, len(OCCUPATIONS), USERS)],
                          "zip": "00000"})
    user_vec = rng.normal(size=(USERS, DIM)) / np.sqrt(DIM)
    user_vec[:, 0] += np.where(genders == "F", 0.3, -0.3)
    return items, item_vec, users, user_vec


def ratings(rng, item_vec, user_vec):
    counts = np.concatenate([rng.integers(N_OLD + 5, 3 * N_OLD, OLD_ITEMS),
                             rng.integers(N_MIN + 1, N_OLD + 1, NEW_ITEMS),
                             rng.integers(2, N_MIN, RARE_ITEMS)])
    item_bias = rng.normal(size=len(counts)) * 0.3
    rows = []
    for i, c in enumerate(counts):
        users = rng.choice(USERS, size=c, replace=False)
        logit = SCALE * user_vec[users] @ item_vec[i] + item_bias[i] + BIAS
        click = rng.random(c) < 1 / (1 + np.exp(-logit))
        times = rng.integers(880_000_000, 890_000_000, size=c)
        rows.append(pd.DataFrame({"user_id": users + 1, "item_id": i + 1, "rating": np.where(click, 5, 2),
                                  "timestamp": times}))
    frame = pd.concat(rows, ignore_index=True)
    return frame.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "sample"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    items, item_vec, users, user_vec = tables(rng)
    frame = ratings(rng, item_vec, user_vec)
    columns = pre.encode(frame, users, items)
    splits, stats = pre.split(columns, N_OLD, N_MIN, K, seed=SEED)
    with tempfile.TemporaryDirectory() as tmp:
        pre.write(columns, splits, stats, tmp, source="synthetic (models/rank/metaemb/data/make_sample.py)")
        copy_files(tmp, args.out)
    print({k: v for k, v in stats["rows"].items()})


if __name__ == "__main__":
    main()

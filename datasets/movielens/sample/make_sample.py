"""Write the synthetic MovieLens-shaped sample the retrieval models ship with (MovieLens itself
may not be redistributed): synthetic raw files in the ml-100k layout (u.data, u.user, u.item)
in a temporary folder - never in the repository - then the same preprocessing as the real data
(preprocess_retrieval.py) into train/, test/ and dataset.json here (written into a temporary
folder, then each file renamed into place; no manifest and no id_space: the shipped files stay
as they are). Deterministic (fixed seed): running it again rewrites the same bytes.

    python datasets/movielens/sample/make_sample.py [--raw-out DIR]   (DIR: keep the raw files there)

Hidden model: 400 items in 8 taste clusters of 50; an item's genres are its cluster's genre plus
sometimes a random one; within a cluster, popularity is Zipf-like. Each of 250 users has a
favourite cluster (which also shifts their occupation and age); each interaction comes from the
favourite cluster with probability 0.75, otherwise from a random one, by popularity, without
repeats. So the history (and the user features) tell which cluster the held-out item likely
comes from: a model can beat the global most-popular list, which mixes all clusters.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))

from datasets.movielens import preprocess_retrieval  # noqa: E402
from datasets.movielens.output import copy_files  # noqa: E402
from datasets.movielens.raw import ML100K_GENRES  # noqa: E402

SEED, USERS, CLUSTERS, PER_CLUSTER, MAX_HISTORY = 2024, 250, 8, 50, 20
OCCUPATIONS = ["artist", "doctor", "educator", "engineer", "lawyer", "programmer", "scientist", "student",
               "technician", "writer", "other"]


def write_raw(raw):
    """The synthetic raw files (ml-100k layout) into folder ``raw``."""
    rng = np.random.default_rng(SEED)
    items = CLUSTERS * PER_CLUSTER
    cluster_of = np.repeat(np.arange(CLUSTERS), PER_CLUSTER)
    popularity = 1.0 / (np.arange(PER_CLUSTER) + 1.0) ** 0.8
    os.makedirs(raw, exist_ok=True)
    with open(os.path.join(raw, "u.item"), "w", encoding="latin-1") as f:
        for item in range(items):
            flags = np.zeros(len(ML100K_GENRES), dtype=int)
            flags[1 + cluster_of[item]] = 1
            if rng.random() < 0.3:
                flags[rng.integers(1, len(ML100K_GENRES))] = 1
            f.write(f"{item + 1}|Synthetic movie {item + 1} (19{70 + item % 30})|01-Jan-19{70 + item % 30}||"
                    f"http://example.invalid/{item + 1}|" + "|".join(map(str, flags)) + "\n")
    ratings, time = [], 880000000
    with open(os.path.join(raw, "u.user"), "w", encoding="latin-1") as f:
        for user in range(USERS):
            favourite = rng.integers(CLUSTERS)
            occupation = OCCUPATIONS[favourite] if rng.random() < 0.6 else OCCUPATIONS[rng.integers(len(OCCUPATIONS))]
            age = int(18 + 5 * favourite + rng.integers(0, 5))
            gender = "MF"[int(rng.random() < 0.5)]
            f.write(f"{user + 1}|{age}|{gender}|{occupation}|{10000 + rng.integers(0, 40):05d}\n")
            seen = set()
            for _ in range(int(rng.integers(10, 31))):
                cluster = favourite if rng.random() < 0.75 else rng.integers(CLUSTERS)
                candidates = [j for j in range(PER_CLUSTER) if cluster * PER_CLUSTER + j not in seen]
                weights = popularity[candidates] / popularity[candidates].sum()
                item = cluster * PER_CLUSTER + candidates[rng.choice(len(candidates), p=weights)]
                seen.add(item)
                time += int(rng.integers(1, 5000))
                ratings.append(f"{user + 1}\t{item + 1}\t{int(rng.integers(1, 6))}\t{time}")
    with open(os.path.join(raw, "u.data"), "w", encoding="latin-1") as f:
        f.write("\n".join(ratings) + "\n")
    return raw


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-out", help="keep the synthetic raw files in this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        raw = write_raw(args.raw_out or os.path.join(tmp, "raw"))
        train, test, info, _ = preprocess_retrieval.preprocess(raw, MAX_HISTORY)
        preprocess_retrieval.write_files(os.path.join(tmp, "out"), train, test, info)
        copy_files(os.path.join(tmp, "out"), HERE)
    print(f"{len(train)} training rows, {len(test)} test users -> {HERE}")


if __name__ == "__main__":
    main()

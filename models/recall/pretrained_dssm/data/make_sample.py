"""Write the synthetic sample in data/ (deterministic): python data/make_sample.py

A hidden taste model: users and items have 4-d latent factors; each user interacts with 10 items
drawn with probability proportional to exp(2 * <user, item>). The "pretrained" item vectors are a
fixed random projection of the item factors into 8 dimensions plus noise (what a vector learned
elsewhere would capture), user vectors the mean of the user's training items' vectors (leaving out a training
positive's own item), as
datasets/movielens/make_pretrained_vectors.py does for MovieLens; the split (last interaction test,
the one before validation) and the negatives (2 per positive) are that script's too. The files
are written into a temporary folder, then each renamed into place (no manifests: the shipped
sample stays as it is).
"""
import os
import sys
import tempfile

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", ".."))
from datasets.movielens.make_pretrained_vectors import split_by_time, write_dataset  # noqa: E402
from datasets.movielens.output import copy_files  # noqa: E402

USERS, ITEMS, LATENT, DIM, PER_USER, NEGATIVES, SEED = 200, 100, 4, 8, 10, 2, 7


def main(out=HERE):
    rng = np.random.default_rng(SEED)
    user_factors = rng.normal(size=(USERS, LATENT))
    item_factors = rng.normal(size=(ITEMS, LATENT))
    logits = 2.0 * user_factors @ item_factors.T / np.sqrt(LATENT)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    rows = []
    for user in range(USERS):
        items = rng.choice(ITEMS, size=PER_USER, replace=False, p=probs[user])
        rows += [(user + 1, item + 1, t) for t, item in enumerate(items)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    train, valid, test = split_by_time(ratings)
    projection = rng.normal(size=(LATENT, DIM)) / np.sqrt(LATENT)
    item_vec = (item_factors @ projection + 0.3 * rng.normal(size=(ITEMS, DIM))).astype(np.float32)
    user_ids, item_ids = np.arange(1, USERS + 1), np.arange(1, ITEMS + 1)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, train, valid, test, user_ids, item_ids, item_vec, NEGATIVES, SEED, "text")
        copy_files(tmp, out)


if __name__ == "__main__":
    main()

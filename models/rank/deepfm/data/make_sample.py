"""Write DeepFM's synthetic sample: a small, learnable data set in PaddleRec's Criteo slot format.

    python models/rank/deepfm/data/make_sample.py            # rewrites data/synthetic/{train,test}
    python models/rank/deepfm/data/make_sample.py --out DIR  # somewhere else (same bytes)

One line per sample, exactly like the real rows in data/train and data/test:

    click:<0|1> dense_feature:<x in [0, 1]> (13 times) 1:<id> ... 26:<id>   (ids in [0, 100000])

Labels come from a hidden logistic model (the one a newcomer's DeepFM should rediscover):

    logit = b + DENSE_WEIGHTS . dense                  # 3 of the 13 dense fields matter
              + sum over ID_EFFECT_FIELDS of effect[field][id]   # per-id effects, small vocabularies
              + PAIR_SCALE * u[id of PAIR[0]] * u[id of PAIR[1]]  # a pairwise (rank-1) interaction: FM's job
    click ~ Bernoulli(sigmoid(logit)), b set so that about POSITIVE_RATE of the rows are clicks.

Each categorical field has its own vocabulary (VOCAB sizes, from 3 to 3000 values, like Criteo's
mix of tiny and huge fields); values are drawn with power-law frequencies, so head ids repeat and
train and test share them, and each (field, value) is hashed into [0, 100000] once (a
table sized to the sample: its checkpoints are 16 MB, not 119). The other
fields and dense features are noise. Train and test are consecutive draws of the same process.

Deterministic: numpy only, one seeded generator, uniform draws only (rng.random), fixed text
formatting; running it again reproduces the committed files byte for byte.
"""
import argparse
import os

import numpy as np

SEED = 20240611
TRAIN_ROWS = 1000
TEST_ROWS = 400
NUM_DENSE = 13
NUM_IDS = 100001  # hyper_parameters.sparse_feature_number: ids in [0, 100000]
POSITIVE_RATE = 0.3
# Number of distinct values of categorical fields 1..26.
VOCAB = [200, 100, 1000, 300, 40, 12, 800, 500, 3, 900, 400, 1000, 300,
         30, 500, 1000, 10, 200, 600, 4, 1000, 15, 100, 800, 40, 400]
DENSE_WEIGHTS = {0: 3.0, 2: -2.5, 6: 2.0}  # dense field index (0-based) -> weight
ID_EFFECT_FIELDS = {6: 1.2, 9: 1.0, 14: 1.0, 17: 1.2}  # field (1-based) -> spread of its per-id effects
PAIR = (20, 22)  # fields (1-based) whose ids interact
PAIR_SCALE = 1.5


def uniform_normal(rng, size):
    """Standard normal draws from uniform ones (Box-Muller), so that only rng.random() is used."""
    u1, u2 = rng.random(size), rng.random(size)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def power_law(rng, vocab, size, exponent=1.1):
    """Values in [0, vocab) with P(k) proportional to (k + 1) ** -exponent."""
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1) ** exponent)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(size), side="right"), vocab - 1)


def _mix(x):
    """splitmix64's finaliser on a uint64 array."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_ids(field, values):
    """(field, value) -> id in [0, NUM_IDS): a hashed start plus value times a hashed stride
    coprime with NUM_IDS, so that the values of one field keep distinct, scattered ids."""
    start, stride = (int(h) % NUM_IDS for h in _mix([2 * field, 2 * field + 1]))
    while np.gcd(stride, NUM_IDS) != 1 or stride < 2:
        stride += 1
    return ((start + values.astype(np.int64) * stride) % NUM_IDS).astype(np.int64)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def auc(labels, scores):
    """ROC AUC (ties get their mean rank)."""
    labels = np.asarray(labels, dtype=bool)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    positives, negatives = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def generate(rows, seed=SEED):
    """(click int (rows,), dense float (rows, 13), ids int (rows, 26), hidden probability (rows,))."""
    rng = np.random.default_rng(seed)
    # Hidden parameters first, so that they do not depend on the number of rows.
    effects = {f: s * uniform_normal(rng, VOCAB[f - 1]) for f, s in ID_EFFECT_FIELDS.items()}
    latent = {f: uniform_normal(rng, VOCAB[f - 1]) for f in PAIR}
    zero_rate = 0.2 + 0.5 * rng.random(NUM_DENSE)  # Criteo's dense fields are often 0
    shape = 0.5 + 2.0 * rng.random(NUM_DENSE)  # skew of the non-zero values
    # Rows.
    dense = np.where(rng.random((rows, NUM_DENSE)) < zero_rate, 0.0, rng.random((rows, NUM_DENSE)) ** shape)
    dense = np.round(dense, 3)
    values = np.stack([power_law(rng, v, rows) for v in VOCAB], axis=1)
    logit = sum(w * dense[:, i] for i, w in DENSE_WEIGHTS.items())
    logit = logit + sum(effects[f][values[:, f - 1]] for f in ID_EFFECT_FIELDS)
    logit = logit + PAIR_SCALE * latent[PAIR[0]][values[:, PAIR[0] - 1]] * latent[PAIR[1]][values[:, PAIR[1] - 1]]
    low, high = -20.0, 20.0  # intercept: mean probability = POSITIVE_RATE
    for _ in range(60):
        mid = (low + high) / 2.0
        low, high = (mid, high) if sigmoid(logit + mid).mean() < POSITIVE_RATE else (low, mid)
    prob = sigmoid(logit + (low + high) / 2.0)
    click = (rng.random(rows) < prob).astype(np.int64)
    ids = np.stack([hash_ids(f, values[:, f - 1]) for f in range(1, len(VOCAB) + 1)], axis=1)
    return click, dense, ids, prob


def format_value(x):
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def write(path, click, dense, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = []
    for r in range(len(click)):
        tokens = [f"click:{click[r]}"] + [f"dense_feature:{format_value(x)}" for x in dense[r]]
        tokens += [f"{f + 1}:{ids[r, f]}" for f in range(ids.shape[1])]
        lines.append(" ".join(tokens) + "\n")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.writelines(lines)
    return os.path.getsize(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "synthetic"),
                        help="output folder; gets train/sample_train.txt and test/sample_test.txt "
                             "(default: data/synthetic next to this script)")
    args = parser.parse_args(argv)
    click, dense, ids, prob = generate(TRAIN_ROWS + TEST_ROWS)
    for field, vocab in enumerate(VOCAB, start=1):  # hashing must not merge two values of a field
        assert len(np.unique(hash_ids(field, np.arange(vocab)))) == vocab, field
    parts = {"train": slice(0, TRAIN_ROWS), "test": slice(TRAIN_ROWS, None)}
    total = 0
    for name, rows in parts.items():
        path = os.path.join(args.out, name, f"sample_{name}.txt")
        size = write(path, click[rows], dense[rows], ids[rows])
        total += size
        print(f"{os.path.relpath(path)}: {len(click[rows])} rows, {click[rows].sum()} clicks, {size} bytes, "
              f"AUC of the hidden model {auc(click[rows], prob[rows]):.4f}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()

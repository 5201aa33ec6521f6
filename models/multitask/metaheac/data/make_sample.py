"""Write the small synthetic Look-alike sample in data/ (deterministic: same files every run).

    python models/multitask/metaheac/data/make_sample.py [--out DIR] [--seed 2021]

Same columns, dtypes and padded-list layout as the published MetaHeac files (npz format, see
models/common/datasets/lookalike.py), ids within config.yaml's max_idxs. Why synthetic: PaddleRec's sample has
only positive labels (every AUC on it is undefined) and the real Tencent data may not be
redistributed. The labels follow

    P(click | user u, ad a) = sigmoid(bias_a + g(u) + pref_a[cluster(u)])

g: a global taste shared by all ads (from age, gender and interest2 ids) that meta-training can
learn; pref_a: each ad's own liking of a few of the 8 user clusters (a cluster shows in the
user's interest1 / kw1 / topic1 ids), drawn independently of the ad's features, so only the ad's
own seed users reveal it: fine-tuning on stage 1 has something to learn. Every test task has
both labels in both stages.
"""
import argparse
import os

import numpy as np

# Largest id of each field, as in config.yaml (PaddleRec's full-data values, smaller kw/topic).
MAX_IDXS = [[3, 2, 855, 5, 7, 2, 1], [124, 82, 12, 2000, 1000, 500, 500], [78, 137, 14, 39, 32, 3]]
STATIC = ["carrier", "consumptionAbility", "LBS", "age", "education", "gender", "house"]
DYNAMIC = ["interest1", "interest2", "interest3", "kw1", "kw2", "topic1", "topic2"]
SEQ_LENS = [10, 10, 10, 5, 5, 5, 5]
AD = ["advertiserId", "campaignId", "creativeSize", "adCategoryId", "productId", "productType"]
CLUSTERED = {"interest1", "kw1", "topic1"}  # multi-hot fields whose ids reveal the user's cluster
NUM_CLUSTERS = 8
NUM_USERS = 5000


def make_users(rng):
    n = NUM_USERS
    users = {name: rng.integers(0, top + 1, n) for name, top in zip(STATIC, MAX_IDXS[0])}
    cluster = rng.integers(0, NUM_CLUSTERS, n)
    for name, top, width in zip(DYNAMIC, MAX_IDXS[1], SEQ_LENS):
        vocab = top  # ids 0..top-1; id `top` pads the list (as the published files pad with a reserved id)
        length = rng.integers(0 if name == "interest3" else 1, width + 1, n)
        ids = rng.integers(0, vocab, (n, width))
        if name in CLUSTERED:  # 80% of the ids from the user's cluster's slice of the vocabulary
            span = vocab // NUM_CLUSTERS
            own = cluster[:, None] * span + rng.integers(0, span, (n, width))
            ids = np.where(rng.random((n, width)) < 0.8, own, ids)
        ids = np.where(np.arange(width)[None, :] < length[:, None], ids, top)
        users[name], users[name + "_length"] = ids, length
    # Global taste: the same for every ad.
    w_age = rng.normal(0, 1.0, MAX_IDXS[0][3] + 1)
    w_gender = rng.normal(0, 0.5, MAX_IDXS[0][5] + 1)
    w_interest2 = rng.normal(0, 3.0, MAX_IDXS[1][1] + 1)
    valid = np.arange(10)[None, :] < users["interest2_length"][:, None]
    taste = (w_interest2[users["interest2"]] * valid).sum(1) / np.maximum(valid.sum(1), 1)
    users["score"] = w_age[users["age"]] + w_gender[users["gender"]] + taste
    users["cluster"] = cluster
    return users


def make_task(rng, users, aid, sizes):
    """Rows of one ad for each requested size (stage 1, stage 2, ...), both labels in each."""
    ad = {name: int(rng.integers(0, top + 1)) for name, top in zip(AD, MAX_IDXS[2])}
    pref = np.zeros(NUM_CLUSTERS)
    pref[rng.choice(NUM_CLUSTERS, 2, replace=False)] = 2.0
    pref[rng.choice(NUM_CLUSTERS, 2, replace=False)] -= 1.0
    bias = rng.normal(-1.0, 0.3)
    parts = []
    for size in sizes:
        while True:
            who = rng.integers(0, NUM_USERS, size)
            logit = bias + users["score"][who] + pref[users["cluster"][who]]
            label = (rng.random(size) < 1 / (1 + np.exp(-logit))).astype(np.int64)
            if 0 < label.sum() < size:
                break
        columns = {"label": label, "aid": np.full(size, aid, np.int64)}
        for name in STATIC + DYNAMIC + [d + "_length" for d in DYNAMIC]:
            columns[name] = users[name][who].astype(np.int64)
        for name in AD:
            columns[name] = np.full(size, ad[name], np.int64)
        parts.append(columns)
    return parts


def concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def write(path, columns):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez_compressed(path, **columns)
    print(f"wrote {path}: {len(columns['label'])} rows, {int(columns['label'].sum())} positives, "
          f"{len(np.unique(columns['aid']))} tasks")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    users = make_users(rng)
    aid = iter(range(1, 10_000))
    # Training tasks: sizes spread like real ads (a few below batch_size=32: sampled with replacement).
    train_sizes = np.concatenate([[12, 20], rng.integers(40, 160, 24)])
    train = [make_task(rng, users, next(aid), [int(s)])[0] for s in train_sizes]
    write(os.path.join(args.out, "train", "train_stage1.npz"), concat(train))
    for name, seeds, candidates, count in (("hot", (250, 400), 300, 6), ("cold", (50, 120), 300, 6)):
        tasks = [make_task(rng, users, next(aid), [int(rng.integers(*seeds)), candidates]) for _ in range(count)]
        for stage in (1, 2):
            write(os.path.join(args.out, f"test_{name}", f"test_{name}_stage{stage}.npz"),
                  concat([t[stage - 1] for t in tasks]))


if __name__ == "__main__":
    main()

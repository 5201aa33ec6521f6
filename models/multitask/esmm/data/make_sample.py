"""Write ESMM's synthetic sample: a small, learnable data set in PaddleRec's Ali-CCP format.

    python models/multitask/esmm/data/make_sample.py            # rewrites data/{train,test}
    python models/multitask/esmm/data/make_sample.py --out DIR  # somewhere else (same bytes)

One impression per line, exactly the format of PaddleRec's Ali-CCP rows (and of
datasets/ali-ccp/run.sh's output): ``sample_id,click,purchase,<field>:<id>,...`` over the 23
fields ESMM uses, ids remapped into 1 .. NUM_IDS - 1 (one id space for all fields).

The hidden process (constants below): users with a fixed profile (101 user id, 121-129 profile
fields, behaviour bags 109_14/110_14/127_14/150_14 of categories, shops and brands they like),
items with a category, shop, brand and tags (205, 206, 207, 216, 210), a scenario (301) and
cross features (508, 509, 702: sometimes absent; 853: 0-2 ids).

    click logit    = CTR_BIAS + user taste for the item's category (category in the user's
                     109_14 bag) + per-category and per-scenario effects + a profile effect (122)
    purchase logit = CVR_BIAS + per-shop quality + user purchasing power (125) + brand in the
                     user's 150_14 bag
    click ~ Bernoulli(sigmoid(click logit)); purchase = click * Bernoulli(sigmoid(purchase logit))

so CVR is learnable from different features than CTR, and purchases exist only on clicks (as in
Ali-CCP). Deterministic: numpy only, one seeded generator, uniform draws only (rng.random),
fixed text formatting: running it again reproduces the committed files byte for byte.
"""
import argparse
import os

import numpy as np

SEED = 20261203
TRAIN_ROWS = 4000
TEST_ROWS = 1500
NUM_USERS, NUM_ITEMS = 300, 400
NUM_CATEGORIES, NUM_SHOPS, NUM_BRANDS = 24, 60, 40
PROFILE = {"121": 8, "122": 3, "124": 2, "125": 4, "126": 6, "127": 7, "128": 3, "129": 4}
CTR_BIAS, CVR_BIAS = -2.0, -1.0
NUM_IDS = 4000  # hyper_parameters.sparse_feature_number: ids 1 .. 3999 (0 unused, as PaddleRec's padding)
FIELDS = ["101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127", "128",
          "129", "205", "206", "207", "210", "216", "508", "509", "702", "853", "301"]


def uniform_int(rng, n, size):
    return np.minimum((rng.random(size) * n).astype(np.int64), n - 1)


def power_law(rng, n, size, exponent=1.1):
    """Ranks 0..n-1 with P(r) ~ (r + 1)^-exponent, by inverse CDF of uniform draws."""
    cdf = np.cumsum(1.0 / np.arange(1, n + 1) ** exponent)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(size)), n - 1)


def normal(rng, size):
    u1, u2 = rng.random(size), rng.random(size)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def bag(rng, vocab, low, high):
    """A set of low..high distinct values from ``vocab`` values (sorted)."""
    size = low + uniform_int(rng, high - low + 1, 1)[0]
    return sorted(set(uniform_int(rng, vocab, size).tolist()))


class Ids:
    """(field, value) -> global id, assigned in order of first use (1, 2, ...)."""

    def __init__(self):
        self.ids = {}

    def __call__(self, field, value):
        key = (field, int(value))
        if key not in self.ids:
            self.ids[key] = len(self.ids) + 1
            if self.ids[key] >= NUM_IDS:
                raise ValueError("NUM_IDS is too small for the sample's vocabulary")
        return self.ids[key]


def world(rng):
    users = []
    for _ in range(NUM_USERS):
        users.append({"profile": {f: uniform_int(rng, n, 1)[0] for f, n in PROFILE.items()},
                      "109_14": bag(rng, NUM_CATEGORIES, 1, 4), "110_14": bag(rng, NUM_SHOPS, 1, 4),
                      "127_14": bag(rng, NUM_BRANDS, 0, 3), "150_14": bag(rng, NUM_BRANDS, 1, 3)})
    items = []
    for _ in range(NUM_ITEMS):
        items.append({"206": uniform_int(rng, NUM_CATEGORIES, 1)[0], "207": uniform_int(rng, NUM_SHOPS, 1)[0],
                      "216": uniform_int(rng, NUM_BRANDS, 1)[0], "210": bag(rng, 50, 1, 3)})
    effects = {"category": 0.8 * normal(rng, NUM_CATEGORIES), "scenario": np.array([0.0, 0.6, -0.6]),
               "122": np.array([0.0, 0.5, -0.5]), "shop": 1.5 * normal(rng, NUM_SHOPS),
               "125": np.array([-2.0, -0.7, 0.7, 2.0])}
    return users, items, effects


def rows(rng, users, items, effects, count, first_id, ids):
    user = power_law(rng, NUM_USERS, count, 0.8)
    item = power_law(rng, NUM_ITEMS, count, 0.9)
    scenario = uniform_int(rng, 3, count)
    present = rng.random((count, 3)) < 0.8
    extra = uniform_int(rng, 3, count)
    u_click, u_buy = rng.random(count), rng.random(count)
    lines = []
    for r in range(count):
        u, it = users[user[r]], items[item[r]]
        click_logit = (CTR_BIAS + 2.5 * (it["206"] in u["109_14"]) + effects["category"][it["206"]]
                       + effects["scenario"][scenario[r]] + effects["122"][u["profile"]["122"]])
        buy_logit = (CVR_BIAS + effects["shop"][it["207"]] + effects["125"][u["profile"]["125"]]
                     + 2.0 * (it["216"] in u["150_14"]))
        click = int(u_click[r] < 1.0 / (1.0 + np.exp(-click_logit)))
        buy = int(click and u_buy[r] < 1.0 / (1.0 + np.exp(-buy_logit)))
        values = {"101": [user[r]], "205": [item[r]], "206": [it["206"]], "207": [it["207"]],
                  "216": [it["216"]], "210": it["210"], "301": [scenario[r]],
                  "508": [u["profile"]["121"] * NUM_CATEGORIES + it["206"]] if present[r, 0] else [],
                  "509": [u["profile"]["127"] * NUM_SHOPS + it["207"]] if present[r, 1] else [],
                  "702": [u["profile"]["126"] * NUM_BRANDS + it["216"]] if present[r, 2] else [],
                  "853": [(user[r] * 7 + k) % 97 for k in range(extra[r])]}
        values.update({f: [u["profile"][f]] for f in PROFILE})
        values.update({f: u[f] for f in ("109_14", "110_14", "127_14", "150_14")})
        pairs = [f"{f}:{ids(f, v)}" for f in FIELDS for v in values[f]]
        lines.append(",".join([str(first_id + r), str(click), str(buy)] + pairs))
    return lines


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=here, help="folder to write train/ and test/ into (default: data/)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    users, items, effects = world(rng)
    ids = Ids()
    train = rows(rng, users, items, effects, TRAIN_ROWS, 1, ids)
    test = rows(rng, users, items, effects, TEST_ROWS, TRAIN_ROWS + 1, ids)
    for split, lines in (("train", train), ("test", test)):
        os.makedirs(os.path.join(args.out, split), exist_ok=True)
        with open(os.path.join(args.out, split, f"sample_{split}.txt"), "w", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        clicks = sum(int(line.split(",")[1]) for line in lines)
        buys = sum(int(line.split(",")[2]) for line in lines)
        print(f"{split}: {len(lines)} rows, {clicks} clicks, {buys} purchases")
    print(f"ids used: {len(ids.ids)} of {NUM_IDS - 1}")


if __name__ == "__main__":
    main()

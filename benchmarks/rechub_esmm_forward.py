"""torch-rechub's ESMM forward alone, timed like ``profile_step.py``'s "infer forward": the median ms
per batch of 1024 over 60 batches collated before the clock (after 5 warm-up), outputs copied to numpy.
The model is built as ``../shared/bench/rechub/torch_esmm.py`` builds it (whose "infer_compute" is
the mean over a whole pass, without the copy). Runs in the harness's torch virtualenv, never the
project's:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 /tmp/rechub-venv/bin/python benchmarks/rechub_esmm_forward.py --threads 1
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "rechub"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/sbs/aliccp", help="the folder gen_aliccp.py wrote")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    sys.path.insert(0, str(HARNESS))
    import torch
    from torch_esmm import ITEM, load
    from torch_rechub.basic.features import SparseFeature
    from torch_rechub.models.multi_task import ESMM

    torch.set_num_threads(args.threads)
    torch.manual_seed(2022)
    meta = json.loads((Path(args.data) / "meta.json").read_text())
    fields = list(meta["vocab"])
    x, _ = load(Path(args.data) / "train.csv", fields)
    user = [SparseFeature(f, meta["vocab"][f], embed_dim=16) for f in fields if f not in ITEM]
    item = [SparseFeature(f, meta["vocab"][f], embed_dim=16) for f in ITEM]
    tower = {"dims": [256, 64], "dropout": 0.0, "activation": "relu"}
    model = ESMM(user, item, cvr_params=dict(tower), ctr_params=dict(tower)).eval()
    warmup = 5
    batches = [{f: torch.tensor(x[f][i * 1024:(i + 1) * 1024]) for f in fields}
               for i in range(warmup + args.batches)]
    times = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            start = time.perf_counter()
            model(batch).numpy()
            if i >= warmup:
                times.append(1000.0 * (time.perf_counter() - start))
    print(json.dumps({"side": "torch-rechub ESMM", "threads": args.threads,
                      "median_ms": {"infer forward": round(statistics.median(times), 2)}}))


if __name__ == "__main__":
    main()

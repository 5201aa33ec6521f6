"""Load figures of tools/serve.py: QPS and latency percentiles over loopback HTTP, beside the
in-process predictor's latency for the same work (the HTTP overhead as a ratio).

    python benchmarks/load_serve.py --rank-export DIR --recall-export DIR [--requests 400]
        [--time-limit 30] [--concurrency 1 8 32] [--candidates 100] [--k 100] [--out FILE.json]

It starts the service itself on a free 127.0.0.1 port (loopback only), then for each route and
concurrency runs a bounded load: ``--requests`` requests spread over that many client threads, each
with its own keep-alive connection, stopped early at ``--time-limit`` seconds. /rank requests score
``--candidates`` rows (sample rows of the ranker's training data); /recall requests ask for
``--k`` items for users from the retrieval model's training rows. The same requests are then run in
this process through models/common/serving.py (the service's own code, no HTTP) one at a time.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()

import numpy as np  # noqa: E402

from models.common.artifacts import write_json  # noqa: E402
from models.common.serving import LoadedExport, client_features  # noqa: E402
from tools.serve import ServiceProcess  # noqa: E402


def sample_requests(export, graph, count, seed=0):
    """Rows of features for ``graph``, drawn from the values its feature tables or its own sample
    hold: every id a random valid one (uniform in its vocabulary), sequences of random length."""
    rng = np.random.default_rng(seed)
    inputs = export.graphs[graph].inputs
    rows = []
    for _ in range(count):
        row = {}
        for name in client_features(inputs):
            spec = inputs[name]
            if spec["kind"] == "sequence":
                row[name] = rng.integers(1, spec["vocab_size"], rng.integers(0, spec["max_len"] + 1)).tolist()
            elif spec["kind"] in ("sparse", "key"):
                row[name] = int(rng.integers(0, spec.get("vocab_size", 1000)))
            elif len(spec["shape"]) == 1:
                row[name] = float(rng.random())
            else:
                row[name] = rng.random(spec["shape"][1]).tolist()
        rows.append(row)
    return rows


def percentiles(seconds):
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def load(port, path, bodies, concurrency, time_limit):
    """POST ``bodies`` (in turn) from ``concurrency`` threads -> figures; stops at ``time_limit``."""
    latencies, failures, lock = [], [], threading.Lock()
    next_index = iter(range(len(bodies)))
    deadline = time.perf_counter() + time_limit

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            start = time.perf_counter()
            try:
                connection.request("POST", path, body=bodies[i], headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:  # counted, and a new connection for the next request
                ok = False
                connection.close()
            with lock:
                (latencies if ok else failures).append(time.perf_counter() - start)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": len(latencies), "failed": len(failures),
            "qps": len(latencies) / wall, **percentiles(latencies)}


def in_process(work, bodies, repeat=1):
    seconds = []
    for body in bodies:
        start = time.perf_counter()
        for _ in range(repeat):
            work(body)
        seconds.append((time.perf_counter() - start) / repeat)
    return percentiles(seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank-export", required=True)
    parser.add_argument("--recall-export", required=True)
    parser.add_argument("--requests", type=int, default=400, help="requests per route and concurrency")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per route and concurrency, at most")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--candidates", type=int, default=100, help="rows per /rank request")
    parser.add_argument("--k", type=int, default=100, help="items per /recall request")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    ranker, retrieval = LoadedExport(args.rank_export, "rank"), LoadedExport(args.recall_export, "recall")
    rank_bodies = [{"model": "rank", "rows": sample_requests(ranker, "rank", args.candidates, seed)}
                   for seed in range(args.requests)]
    recall_bodies = [{"model": "recall", "user": user, "k": args.k}
                     for user in sample_requests(retrieval, "user_tower", args.requests)]
    service = ServiceProcess("--export", f"rank={args.rank_export}", f"recall={args.recall_export}")
    port = service.port
    try:
        results = {"setup": {"requests": args.requests, "time_limit_s": args.time_limit, "candidates": args.candidates,
                             "k": args.k, "rank_model": ranker.serving["model"],
                             "recall_model": retrieval.serving["model"], "cpus": os.cpu_count()}}
        for route, bodies, work in (
                ("/rank", rank_bodies, lambda b: ranker.rank(b["rows"])),
                ("/recall", recall_bodies, lambda b: retrieval.recall(b["user"], b["k"]))):
            encoded = [json.dumps(b).encode() for b in bodies]
            load(port, route, encoded[:20], 1, args.time_limit)  # warm-up
            rows = [load(port, route, encoded, c, args.time_limit) for c in args.concurrency]
            in_process(work, bodies[:10])  # warm-up
            direct = in_process(work, bodies[:min(200, len(bodies))])
            for row in rows:
                row["p50_vs_in_process"] = row["p50_ms"] / direct["p50_ms"]
            results[route] = {"http": rows, "in_process": direct}
            print(f"\n{route}  (in process, one at a time: p50 {direct['p50_ms']:.2f} ms, p99 {direct['p99_ms']:.2f} ms)")
            print("concurrency  requests  failed      QPS   p50 ms   p99 ms   p50 / in-process")
            for r in rows:
                print(f"{r['concurrency']:>11}  {r['requests']:>8}  {r['failed']:>6}  {r['qps']:>7.1f}  {r['p50_ms']:>7.2f}"
                      f"  {r['p99_ms']:>7.2f}  {r['p50_vs_in_process']:>17.2f}")
    finally:
        service.stop()
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()

"""Where a training step and an inference forward spend their time: per phase, and op by op.

    python benchmarks/profile_step.py -m models/rank/deepfm/config_bigdata.yaml --data DIR \
        --batch-size 1024 --threads 1 [--ops] [-o key=value ...]

Batches are read from ``--data`` (or the config's train_data_dir) through the runners' loader
before any clock starts, so only the maths is timed. For each of ``--steps`` steps after
``--warmup`` (medians, ms): the phases of tools/trainer.py's own step (forward + loss + running
metrics, backward, optimizer step + clear_grad: tools.utils.runtime.train_step), then the
inference forward alone under no_grad (the model's forward on a batch, no metric). ``--ops``
adds paddle's profiler table of the CPU ops of a few training steps and, separately, of a few
inference forwards (op, calls, total ms, share), the slowest first.

Under ``python -m paddle.distributed.launch --nproc_per_node N`` with ``-o runner.use_fleet=true``
(and ``runner.embedding_sharding=row``) each rank times its own share of the batches, the
gradient exchange as its own phase (tools/utils/parallel.py); each rank prints its line.
``--no-exchange`` leaves the exchange out: the ranks' maths alone, side by side on the machine's
cores - the bound any exchange is measured against (the replicas drift apart: timing, not training).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()
import paddle  # noqa: E402

from models.common.data.loader import create_dataset, create_loader  # noqa: E402
from models.common.loading import load_reader  # noqa: E402
from tools.utils.parallel import create_model, distribute  # noqa: E402
from tools.utils.runtime import setup, train_step  # noqa: E402


def _timed(phases, name, fn):
    start = time.perf_counter()
    out = fn()
    phases.setdefault(name, []).append(1000.0 * (time.perf_counter() - start))
    return out


def _op_table(run, steps, top):
    """Paddle profiler over ``steps`` calls of ``run`` -> the ``top`` CPU ops by total time."""
    import paddle.profiler as profiler
    totals = {}
    with profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None) as prof:
        for _ in range(steps):
            run()
            prof.step()
    for tree in prof.profiler_result.get_data().values():
        stack = list(tree.children_node)
        while stack:
            node = stack.pop()
            if node.type == profiler.TracerEventType.Operator:
                calls, total = totals.get(node.name, (0, 0.0))
                totals[node.name] = (calls + 1, total + (node.end_ns - node.start_ns) / 1e6)
            else:  # an op's own children (its kernels, inner ops) are inside its time
                stack.extend(node.children_node)
    everything = sum(t for _, t in totals.values()) or 1.0
    rows = sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]
    return [{"op": name, "calls_per_step": calls / steps, "ms_per_step": round(total / steps, 3),
             "share": round(total / everything, 3)} for name, (calls, total) in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--config", required=True)
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", help="training data folder (default runner.train_data_dir)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ops", action="store_true", help="also paddle's profiler, op by op")
    parser.add_argument("--top", type=int, default=25, help="ops listed per table (default 25)")
    parser.add_argument("--no-exchange", action="store_true",
                        help="several ranks: skip the gradient exchange (a bound for it, not training)")
    args = parser.parse_args(argv)
    paddle.set_flags({"FLAGS_paddle_num_threads": args.threads})
    overrides = list(args.opt) + [f"runner.train_batch_size={args.batch_size}"]
    if args.data:
        overrides.append(f"runner.train_data_dir={args.data}")
    ctx = setup(argparse.Namespace(config=args.config, opt=overrides), distributed=True)
    config, dm = ctx.config, ctx.dygraph_model
    model = create_model(ctx)
    optimizer = dm.create_optimizer(model, config)
    model, exchange = distribute(ctx, model)
    if args.no_exchange:
        exchange = None
    metrics, _ = dm.create_metrics("train")
    dataset = create_dataset(load_reader(config, "train"), config, "train")
    batches = iter(create_loader(dataset, config, "train", 0, ctx.rank, ctx.world_size))
    batches = [next(batches) for _ in range(args.warmup + args.steps)]

    def train(batch, phases):
        loss, _ = train_step(dm, model, optimizer, metrics, batch, config,
                             phase=lambda name, work: _timed(phases, name, work), exchange=exchange)
        float(loss)

    def infer(batch, phases):
        _timed(phases, "infer forward", lambda: [o.numpy() for o in paddle.utils.flatten(model(batch))])

    phases = {}
    model.train()
    for i, batch in enumerate(batches):
        train(batch, phases if i >= args.warmup else {})
    model.eval()
    with paddle.no_grad():
        for i, batch in enumerate(batches):
            infer(batch, phases if i >= args.warmup else {})
    median = {name: round(statistics.median(times), 2) for name, times in phases.items()}
    median["train step"] = round(sum(v for k, v in median.items() if k != "infer forward"), 2)
    result = {"config": args.config, "overrides": args.opt, "threads": args.threads, "rank": ctx.rank,
              "world_size": ctx.world_size, "exchange": exchange is not None,
              "batch_size": args.batch_size, "median_ms": median}
    if args.ops:
        cycle = iter(batches * 1000)
        model.train()
        result["train_ops"] = _op_table(lambda: train(next(cycle), {}), 10, args.top)
        model.eval()
        with paddle.no_grad():
            result["infer_ops"] = _op_table(lambda: infer(next(cycle), {}), 10, args.top)
    for table in ("train_ops", "infer_ops"):
        for row in result.get(table, []):
            print(f"{table[:-4]:5s} {row['ms_per_step']:9.3f} ms {row['share']:6.1%} {row['calls_per_step']:6.1f}x  {row['op']}",
                  file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

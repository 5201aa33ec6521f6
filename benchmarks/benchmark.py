"""Measure a model's input pipeline and training/inference throughput on data of its own format.

    python benchmarks/benchmark.py -m models/rank/deepfm/config.yaml --rows 200000 --batch-size 512 --baseline

By default N rows are synthesised from the sample files in runner.train_data_dir (cycled over,
sparse ids re-hashed per pass so the embedding table sees many rows) into a temporary folder;
``--data DIR`` benchmarks existing files instead. Then, through the runners' own code path
(the model's DygraphModel and RecDataset, models.common.data.loader.create_dataset / create_loader):

- dataset construction: parse seconds, rows/s, resident memory it added;
- training: ``--warmup`` untimed steps, then ``--steps`` timed steps (default: one epoch), with
  per-step reader wait vs. step time -> train ins/s and reader share ("reader_share"); the
  reader is also timed alone ("reader_cost_share": its cost as a share of a step, which a
  prefetch thread can hide from the wait time but not from the CPU);
- inference under no_grad: ins/s and reader share;
- peak memory: the process's RSS high-water mark (ru_maxrss) after our first training round
  ("peak_rss_mb_ours_train") and at the end ("peak_rss_mb", with the baseline's model too), and
  the same two peaks of anonymous resident memory ("peak_rss_anon_mb_ours_train",
  "peak_rss_anon_mb": RssAnon of /proc/self/status, sampled every 20 ms from the start of the
  run), the figure that counts when data is memory-mapped (RSS also counts the mapped file's pages).

``--baseline`` also runs, in the same process and on the same files, a PaddleRec-style pipeline
(line-by-line Python parsing of the slot format driven by the reader module's ``SLOTS`` - or, for
a reader declaring ``PADDLEREC_FORMAT = "aliccp"``, PaddleRec's ESMM reader of field:id lists - one
sample at a time from an IterableDataset, per-sample collation by paddle.io.DataLoader), trains
a freshly initialised copy of the same network for the same steps and reports the speedups
ours/baseline. The two pipelines alternate in ``--rounds`` chunks of steps, so that a change in
machine load hits both alike; "speedup.train_rounds" shows the spread. A model's own benchmark,
``benchmarks/models/<model folder name>.py`` (or ``--extra FILE``) with ``run_benchmark(config) -> dict``,
is called too; its result goes under "model_specific".

Progress goes to stderr; stdout gets one readable summary line and, last, the JSON result.
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from benchmarks import harness as bm  # noqa: E402
from benchmarks.baselines import paddlerec_readers  # noqa: E402
from models.common.data import list_data_files  # noqa: E402
from models.common.loading import REPO_ROOT, load_module, load_reader  # noqa: E402
from tools.utils.checkpoint import write_json  # noqa: E402
from models.common.data.loader import create_dataset, create_loader  # noqa: E402
from tools.utils.runtime import USER_ERRORS, seed_everything, setup  # noqa: E402

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--config", required=True, help="model config YAML")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, as for tools/trainer.py")
    parser.add_argument("--rows", type=int, default=100000, help="rows to synthesise (default 100000)")
    parser.add_argument("--data", help="benchmark the files in this folder instead of synthesising")
    parser.add_argument("--files", type=int, default=None,
                        help="number of files to synthesise (default: one per 100000 rows)")
    parser.add_argument("--no-rehash", action="store_true", help="copy sample lines without re-hashing sparse ids")
    parser.add_argument("--keep-data", action="store_true", help="keep the synthesised folder (path is reported)")
    parser.add_argument("--write-data", metavar="DIR",
                        help="only synthesise --rows rows into DIR (for later --data DIR runs) and exit")
    parser.add_argument("--batch-size", type=int, help="training batch size (default runner.train_batch_size)")
    parser.add_argument("--infer-batch-size", type=int, help="inference batch size (default: --batch-size)")
    parser.add_argument("--steps", type=int, help="timed training steps (default: one epoch minus warm-up)")
    parser.add_argument("--infer-steps", type=int, help="timed inference batches (default: one pass minus warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing (default 5)")
    parser.add_argument("--in-memory", action="store_true",
                        help="also train on an in-memory copy of the same rows (the reference for the "
                             "memory-mapped cache's speed), alternating with ours in --rounds chunks")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure a PaddleRec-style line-by-line reader pipeline on the same files")
    parser.add_argument("--baseline-opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides for the baseline's model only, e.g. PaddleRec's optimizer "
                             "settings: hyper_parameters.optimizer.lazy_mode=false")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --baseline: alternate ours and the baseline in this many chunks of steps (default 3)")
    parser.add_argument("--threads", type=int,
                        help="set FLAGS_paddle_num_threads (paddle's CPU math threads) for this run")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also build the dataset once more under tracemalloc and report its Python/numpy peak")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--extra", help="a module with run_benchmark(config) -> dict to run as the model's own "
                        "benchmark (default: benchmarks/models/<model folder name>.py)")
    args = parser.parse_args(argv)
    for name in ("rows", "rounds", "files", "batch_size", "infer_batch_size", "steps", "infer_steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def log(message):
    print(f"{time.strftime('%H:%M:%S')} benchmark: {message}", file=sys.stderr, flush=True)


def _reader_module(reader_class):
    return sys.modules.get(reader_class.__module__)


def _array_mb(dataset):
    """Size of the dataset's row blocks (memory-mapped from the cache, or in memory)."""
    parts = getattr(dataset, "parts", None)
    if not parts:
        return None
    return sum(block.nbytes for part in parts for block in part.values()) / 2 ** 20


def _first_rows(dataset, count):
    """Rows 0..count-1 of our dataset as a batch dict, without going through a loader."""
    return dataset.take(np.arange(count))


def prepare_data(args, config, slots):
    """Point runner.train_data_dir at the data to benchmark; return (description, temp dir or None)."""
    if args.data:
        folder = os.path.abspath(args.data)
        files = list_data_files(folder, "--data")
        config.set("runner.train_data_dir", folder)
        return {"dir": folder, "files": len(files), "synthesised": False,
                "bytes": sum(os.path.getsize(f) for f in files)}, None
    source = list_data_files(config.get("runner.train_data_dir"), "runner.train_data_dir")
    temp = os.path.abspath(args.write_data) if args.write_data else tempfile.mkdtemp(prefix="benchmark-data-")
    num_files = args.files or max(1, -(-args.rows // 100000))
    num_ids = config.get("hyper_parameters.sparse_feature_number")
    info = bm.synthesise(source, temp, args.rows, slots=slots, num_ids=num_ids if isinstance(num_ids, int) else None,
                         num_files=num_files, perturb=not args.no_rehash)
    info.update({"synthesised": True, "source_dir": config.get("runner.train_data_dir")})
    config.set("runner.train_data_dir", temp)
    return info, temp


class Pipeline:
    """One input pipeline feeding a freshly initialised copy of the model (same seed)."""

    def __init__(self, ctx, make_train_loader, make_infer_loader, adapt=None, config=None):
        self.config = config = config or ctx.config
        dm = ctx.dygraph_model
        seed_everything(config.get("runner.seed"))
        self.model = dm.create_model(config)
        self.optimizer = dm.create_optimizer(self.model, config)
        self.train_metrics, _ = dm.create_metrics("train")
        self.infer_metrics, self.infer_names = dm.create_metrics("infer")
        self.make_train_loader, self.make_infer_loader = make_train_loader, make_infer_loader
        self.train_batches = bm.endless(make_train_loader)
        self.infer_batches = bm.endless(make_infer_loader)
        self.adapt = adapt
        self.train_meter, self.infer_meter = bm.Meter(), bm.Meter()
        self.last_loss = float("nan")

    def train(self, ctx, warmup, steps):
        self.last_loss = bm.train_steps(ctx.dygraph_model, self.config, self.model, self.optimizer, self.train_metrics,
                                        self.train_batches, warmup, steps, self.train_meter, self.adapt)

    def infer(self, ctx, warmup, steps):
        bm.infer_steps(ctx.dygraph_model, self.config, self.model, self.infer_metrics, self.infer_batches,
                       warmup, steps, self.infer_meter, self.adapt)

    def results(self, warmup, reader_steps):
        train = self.train_meter.summary()
        train["last_loss"] = self.last_loss
        # The reader alone, as a share of the training step: a prefetching loader hides its cost
        # from the wait time but it still takes CPU time and the GIL from the training step.
        reader = bm.time_reader(bm.endless(self.make_train_loader), warmup, reader_steps, self.adapt)
        train["reader_only"] = reader
        train["reader_cost_share"] = min(1.0, reader["ms_per_batch"] / train["step_ms_mean"]) \
            if train["step_ms_mean"] else 0.0
        infer = self.infer_meter.summary()
        infer["metrics"] = {n: float(m.accumulate()) for n, m in zip(self.infer_names, self.infer_metrics)}
        return train, infer


def make_baseline(ctx, dataset, slots, overrides=(), module=None):
    """The PaddleRec-style pipeline on the same files, or (None, reason it is skipped, None).
    ``overrides`` (key=value) apply to the baseline's copy of the config only, e.g. PaddleRec's
    own optimizer settings."""
    config = ctx.config.copy()
    config.apply_overrides(overrides, ctx.dygraph_model.full_config_spec(config))
    files = list_data_files(config.get("runner.train_data_dir"), "runner.train_data_dir")
    num_workers = config.get("runner.num_workers")
    module = module or _reader_module(type(dataset))
    other = paddlerec_readers.paddlerec_line_reader(module, files, _first_rows(dataset, min(len(dataset), 4))) if module else None
    if other is not None:  # a non-slot PaddleRec format (Ali-CCP's field:id lists)
        line_dataset, adapter = other
    elif not slots:
        return None, ("the reader module defines no SLOTS list, so there is no line-by-line "
                      "slot-format reader to compare with"), None
    else:
        line_dataset = paddlerec_readers.LineByLineSlotDataset(files, slots)
        adapter = paddlerec_readers.BatchAdapter(line_dataset, _first_rows(dataset, min(len(dataset), 4)))
    if adapter.error:
        return None, adapter.error, None

    def make_loader(batch_size):
        return lambda epoch: paddle.io.DataLoader(
            line_dataset, batch_size=batch_size, drop_last=True, num_workers=num_workers)

    train_bs = config.get("runner.train_batch_size")
    first = next(iter(make_loader(train_bs)(0)))
    same = paddlerec_readers.batches_equal(_first_rows(dataset, train_bs), adapter(first))
    if not same:
        log("warning: the baseline's first batch differs from our reader's first rows")
    pipeline = Pipeline(ctx, make_loader(train_bs), make_loader(config.get("runner.infer_batch_size")), adapter,
                        config=config)
    return pipeline, None, same


def _mb(value):
    return None if value is None else round(value, 1)


def _pipeline_on(ctx, dataset):
    config = ctx.config
    return Pipeline(ctx, lambda epoch: create_loader(dataset, config, "train", epoch),
                    lambda epoch: create_loader(dataset, config, "infer", epoch))


def measure(ctx, dataset, slots, args, steps, infer_steps, memory, anon_sampler):
    """Train and infer with our pipeline (and the baseline / the in-memory copy), alternating in
    ``--rounds`` chunks so that a change in machine load hits all alike. ``memory`` gets the peaks
    after our first round."""
    ours = _pipeline_on(ctx, dataset)
    in_memory, base, skipped, same = None, None, None, None
    rounds = args.rounds if args.baseline or args.in_memory else 1
    chunks = bm.split_steps(steps, rounds)
    log(f"training: {args.warmup} warm-up + {steps} timed steps" + (f" in {len(chunks)} rounds" if rounds > 1 else ""))
    for i, chunk in enumerate(chunks):
        warmup = args.warmup if i == 0 else 0
        ours.train(ctx, warmup, chunk)
        if i == 0:
            memory["peak_rss_mb_ours_train"] = round(bm.peak_rss_mb(), 1)
            memory["peak_rss_anon_mb_ours_train"] = _mb(anon_sampler.peak_mb)
            if args.in_memory and hasattr(dataset, "in_memory"):  # made after our peak is taken
                in_memory = _pipeline_on(ctx, dataset.in_memory())
            if args.baseline:
                base, skipped, same = make_baseline(ctx, dataset, slots, args.baseline_opt)
                if skipped:
                    log(f"baseline skipped: {skipped}")
        for other in (base, in_memory):
            if other is not None:
                other.train(ctx, warmup, chunk)
    for i, chunk in enumerate(bm.split_steps(infer_steps, rounds)):
        warmup = args.warmup if i == 0 else 0
        for pipeline in (ours, base, in_memory):
            if pipeline is not None:
                pipeline.infer(ctx, warmup, chunk)
    reader_steps = min(steps, 100)
    train, infer = ours.results(args.warmup, reader_steps)
    log(f"ours: train {train['ins_per_sec']:.0f} ins/s, reader share {train['reader_share']:.1%} "
        f"(alone {train['reader_cost_share']:.1%}); infer {infer['ins_per_sec']:.0f} ins/s")
    if in_memory is not None:
        m_train, m_infer = in_memory.results(args.warmup, reader_steps)
        log(f"in-memory copy: train {m_train['ins_per_sec']:.0f} ins/s, reader share {m_train['reader_share']:.1%}; "
            f"infer {m_infer['ins_per_sec']:.0f} ins/s")
        memory["in_memory"] = {"train": m_train, "infer": m_infer, "same_last_loss": m_train["last_loss"] == train["last_loss"]}
    baseline = None
    if args.baseline:
        if base is None:
            baseline = {"skipped": skipped}
        else:
            b_train, b_infer = base.results(args.warmup, reader_steps)
            log(f"baseline: train {b_train['ins_per_sec']:.0f} ins/s, reader share {b_train['reader_share']:.1%} "
                f"(alone {b_train['reader_cost_share']:.1%}); infer {b_infer['ins_per_sec']:.0f} ins/s")
            baseline = {
                "overrides": list(args.baseline_opt),
                "pipeline": "PaddleRec-style: line-by-line Python parse (split, slot look-up in lists, "
                            "int()/float() per value), IterableDataset yielding one sample, DataLoader default "
                            "per-sample collate, drop_last",
                "first_batch_matches_ours": bool(same),
                "train": b_train,
                "infer": b_infer,
            }
    return train, infer, baseline


def model_specific(config, path=None):
    """The result of the model's own benchmark (benchmarks/models/<model folder name>.py, or ``path``)."""
    path = path or os.path.join(BENCHMARKS, "models", os.path.basename(config.folder) + ".py")
    if not os.path.isfile(path):
        return None
    module = load_module(path)
    if not hasattr(module, "run_benchmark"):
        return {"skipped": f"{path} defines no run_benchmark(config)"}
    log(f"running {path}")
    try:
        result = module.run_benchmark(config)
    except Exception as error:  # report, keep the generic figures
        log(f"warning: {path} failed: {error!r}")
        return {"error": repr(error)}
    return result if isinstance(result, dict) else {"result": result}


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _ratio(a, b):
    return a / b if b else None


def summary_line(result):
    name = result["model"]
    train, infer, data = result["train"], result["infer"], result["dataset"]
    text = (f"{name}: {result['rows']} rows, batch {result['batch_size']}: "
            f"train {train['ins_per_sec']:.0f} ins/s (reader {train['reader_share']:.1%} of step), "
            f"infer {infer['ins_per_sec']:.0f} ins/s, parse {data['parse_seconds']:.2f} s "
            f"({data['rows_per_sec']:.0f} rows/s), reopen {data['open_cached_seconds']:.2f} s, "
            f"peak RSS {result['memory']['peak_rss_mb_ours_train']:.0f} MB")
    anon = result["memory"].get("peak_rss_anon_mb_ours_train")
    if anon is not None:
        text += f" (anonymous {anon:.0f} MB)"
    if "mmap_vs_in_memory" in result:
        text += f" | memory-mapped/in-memory train {result['mmap_vs_in_memory']['train']:.3f}x"
    base = result.get("baseline")
    if base and "train" in base:
        text += (f" | baseline train {base['train']['ins_per_sec']:.0f} ins/s "
                 f"(reader {base['train']['reader_share']:.1%}), infer {base['infer']['ins_per_sec']:.0f} ins/s"
                 f" -> speedup train {result['speedup']['train']:.2f}x, infer {result['speedup']['infer']:.2f}x")
    elif base:
        text += f" | baseline skipped: {base['skipped']}"
    return text


def run(args):
    if args.threads:
        paddle.set_flags({"FLAGS_paddle_num_threads": args.threads})
    ctx = setup(argparse.Namespace(config=args.config, opt=args.opt), distributed=False)
    config = ctx.config
    if args.batch_size:
        config.set("runner.train_batch_size", args.batch_size)
    batch_size = config.get("runner.train_batch_size")
    config.set("runner.infer_batch_size", args.infer_batch_size or batch_size)
    reader_class = load_reader(config, "train")
    slots = bm.typed_slots(_reader_module(reader_class), config)

    temp = None
    anon_sampler = bm.PeakRssAnonSampler().start()  # from here on: the peaks cover every phase
    try:
        data_info, temp = prepare_data(args, config, slots)
        if args.write_data:
            log(f"wrote {data_info['rows']} rows to {temp} ({data_info['bytes'] / 2 ** 20:.1f} MB)")
            temp = None  # keep it
            return {"data": data_info}
        if data_info.get("synthesised"):
            log(f"synthesised {data_info['rows']} rows ({data_info['bytes'] / 2 ** 20:.1f} MB, "
                f"{data_info['files']} files) in {data_info['seconds']:.1f} s")
        rss_before, anon_before = bm.current_rss_mb(), bm.rss_anon_mb()
        start = time.perf_counter()
        dataset = create_dataset(reader_class, config, "train")  # converts into the cache if needed
        parse_seconds = time.perf_counter() - start
        start = time.perf_counter()
        dataset = create_dataset(reader_class, config, "train")  # what every later run does
        open_seconds = time.perf_counter() - start
        rows = len(dataset)
        dataset_info = {
            "parse_seconds": round(parse_seconds, 4),
            "open_cached_seconds": round(open_seconds, 4),
            "rows_per_sec": rows / parse_seconds if parse_seconds > 0 else 0.0,
            "mb_per_sec": data_info["bytes"] / 2 ** 20 / parse_seconds if parse_seconds > 0 else 0.0,
            "rss_added_mb": round(bm.current_rss_mb() - rss_before, 1),
            "arrays_mb": _array_mb(dataset),
        }
        log(f"dataset: {rows} rows parsed in {parse_seconds:.2f} s ({dataset_info['rows_per_sec']:.0f} rows/s)")
        infer_bs = config.get("runner.infer_batch_size")
        steps = args.steps or bm.default_steps(rows, batch_size, args.warmup)
        infer_steps = args.infer_steps or bm.default_steps(rows, infer_bs, args.warmup)

        memory = {"rss_after_parse_mb": round(rss_before + dataset_info["rss_added_mb"], 1),
                  "rss_anon_after_parse_mb": _mb(bm.rss_anon_mb())}
        if anon_before is not None and memory["rss_anon_after_parse_mb"] is not None:
            dataset_info["rss_anon_added_mb"] = round(memory["rss_anon_after_parse_mb"] - anon_before, 1)
        load_before = _loadavg()
        train, infer, baseline = measure(ctx, dataset, slots, args, steps, infer_steps, memory, anon_sampler)
        memory["peak_rss_mb"] = round(bm.peak_rss_mb(), 1)
        memory["peak_rss_anon_mb"] = _mb(anon_sampler.peak_mb)
        result = {
            "config": config.path,
            "model": os.path.relpath(config.folder, os.path.join(REPO_ROOT, "models")),
            "overrides": list(args.opt),
            "rows": rows,
            "rows_requested": None if args.data else args.rows,
            "batch_size": batch_size,
            "infer_batch_size": infer_bs,
            "warmup_steps": args.warmup,
            "steps": steps,
            "infer_steps": infer_steps,
            "data": data_info,
            "dataset": dataset_info,
            "train": train,
            "infer": infer,
            "memory": memory,
        }
        if "in_memory" in memory:
            result["in_memory"] = memory.pop("in_memory")
            ours_rounds = train["ins_per_sec_rounds"]
            mem_rounds = result["in_memory"]["train"]["ins_per_sec_rounds"]
            result["mmap_vs_in_memory"] = {
                "train": _ratio(train["ins_per_sec"], result["in_memory"]["train"]["ins_per_sec"]),
                "infer": _ratio(infer["ins_per_sec"], result["in_memory"]["infer"]["ins_per_sec"]),
                "train_rounds": [round(a / b, 3) for a, b in zip(ours_rounds, mem_rounds) if b],
            }
        if baseline is not None:
            result["baseline"] = baseline
            if "train" in baseline:
                ours_rounds, base_rounds = train["ins_per_sec_rounds"], baseline["train"]["ins_per_sec_rounds"]
                result["speedup"] = {
                    "train": _ratio(train["ins_per_sec"], baseline["train"]["ins_per_sec"]),
                    "infer": _ratio(infer["ins_per_sec"], baseline["infer"]["ins_per_sec"]),
                    "train_rounds": [round(a / b, 3) for a, b in zip(ours_rounds, base_rounds) if b],
                }
                if result["speedup"]["train_rounds"]:
                    result["speedup"]["train_rounds_median"] = float(np.median(result["speedup"]["train_rounds"]))
        if args.tracemalloc:
            import tracemalloc

            del dataset
            tracemalloc.start()
            create_dataset(reader_class, config, "train")  # the peak is reached while parsing
            memory["parse_tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2 ** 20, 1)
            tracemalloc.stop()
        extra = model_specific(config, args.extra)
        if extra is not None:
            result["model_specific"] = extra
        result["environment"] = {
            "cpu_count": os.cpu_count(),
            "paddle": paddle.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "paddle_num_threads": paddle.get_flags(["FLAGS_paddle_num_threads"])["FLAGS_paddle_num_threads"],
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "num_workers": config.get("runner.num_workers"),
            "shuffle": config.get("runner.shuffle"),
            "loadavg_1min_before_after": [load_before, _loadavg()],
        }
        if args.keep_data and temp:
            data_info["kept"] = True
        return result
    finally:
        anon_sampler.stop()
        if temp and not args.keep_data:
            shutil.rmtree(temp, ignore_errors=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        result = run(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    if args.out:
        write_json(os.path.abspath(args.out), result)
    if args.write_data:
        return result
    print(summary_line(result), flush=True)
    print(json.dumps(result, sort_keys=True, default=float), flush=True)
    return result


if __name__ == "__main__":
    main()

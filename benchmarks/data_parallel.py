"""Data-parallel throughput, bytes exchanged and peak memory: tools/trainer.py run as a user runs
it, one epoch each.

    python benchmarks/data_parallel.py -m models/rank/deepfm/config_bigdata.yaml --data DIR
        [--rounds 2] [--settings "sparse 1x1" "sharded 2x1" ...] [--out FILE.json] [-o key=value ...]

Settings (same data, same global work): 1 process x 1 thread and 1 x 2 threads (OMP_NUM_THREADS),
and 2 processes x 1 thread (paddle.distributed.launch, gloo), each with dense gradients (paddle's
DataParallel all-reduce of whole tables) and with row-sparse gradients + lazy Adam (the touched
rows exchanged, tools/utils/parallel.py); and row-sharded tables on 2 processes (each holds half
of every table, models/common/sharding.py; on one process the tables are whole, as sparse).
Throughput = the epoch's rows (all ranks) / its seconds, from the trainer's "epoch 0 done" line;
bytes = what each rank sends per step (dense: every gradient; the others: their logged per-step
average, lookups included); memory = the largest peak anonymous resident memory (RssAnon,
sampled every 0.1 s) of the run's processes: one rank. Rounds alternate the settings.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from models.common.artifacts import write_json  # noqa: E402
SPARSE = ["hyper_parameters.sparse_gradients=true", "hyper_parameters.optimizer.lazy_mode=true"]
MODES = {"dense": ["hyper_parameters.sparse_gradients=false", "hyper_parameters.optimizer.lazy_mode=false"],
         "sparse": SPARSE, "sharded": SPARSE + ["runner.embedding_sharding=row"]}
LAYOUTS = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}
SETTINGS = [f"{m} {l}" for m in MODES for l in LAYOUTS if m != "sharded" or l == "2x1"]


class PeakMemory(threading.Thread):
    """The peak RssAnon (MB) of each process in the tree under ``pid``, sampled until ``stop()``."""

    def __init__(self, pid, every=0.1):
        super().__init__(daemon=True)
        self.root, self.every, self.peaks, self.done = pid, every, {}, threading.Event()
        self.start()

    def _tree(self):
        children = {}
        for name in os.listdir("/proc"):
            try:
                with open(f"/proc/{name}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(name))
            except (OSError, ValueError, IndexError):
                continue
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children.get(pid, [])
        return tree

    def run(self):
        while not self.done.wait(self.every):
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/status") as f:
                        kb = next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
                except (OSError, StopIteration):
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), kb / 1024)

    def stop(self):
        self.done.set()
        self.join()
        return max(self.peaks.values(), default=0.0)


def run(config, data, mode, layout, overrides, folder):
    processes, threads = LAYOUTS[layout]
    args = ["-m", config, "-o", f"runner.train_data_dir={data}", f"runner.model_save_path={folder}/ckpt",
            "runner.epochs=1", "runner.overwrite=true", *MODES[mode], *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    if processes == 1:
        command = [sys.executable, os.path.join(REPO, "tools", "trainer.py"), *args]
    else:
        command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(processes),
                   "--log_dir", f"{folder}/logs", os.path.join(REPO, "tools", "trainer.py"), *args,
                   "runner.use_fleet=true"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=folder)
    memory = PeakMemory(process.pid)
    log = process.communicate()[0]
    peak = memory.stop()
    if processes > 1 and os.path.isfile(f"{folder}/logs/workerlog.0"):
        log = open(f"{folder}/logs/workerlog.0").read()
    if process.returncode:
        raise RuntimeError(f"{mode} {layout} failed:\n{log[-3000:]}")
    summary = re.search(r"epoch 0 done: .*?samples: (\d+), seconds: ([\d.]+)", log)
    sent = re.search(r"(?:gradient exchange:|every gradient,) ([\d.]+) MB sent per step", log)
    return {"rows": int(summary.group(1)), "seconds": float(summary.group(2)),
            "rows_per_s": int(summary.group(1)) / float(summary.group(2)),
            "mb_per_step": float(sent.group(1)) if sent else None, "peak_rss_anon_mb": peak}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--config", required=True)
    parser.add_argument("--data", required=True, help="training data folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=SETTINGS, metavar="SETTING",
                        help=f"which to run (default all: {', '.join(SETTINGS)})")
    parser.add_argument("--out")
    parser.add_argument("-o", "--opt", nargs="*", default=[])
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for setting in args.settings:
                mode, layout = setting.split()
                folder = os.path.join(tmp, f"{mode}_{layout}_{r}")
                os.makedirs(folder)
                got = run(os.path.abspath(args.config), os.path.abspath(args.data), mode, layout, args.opt, folder)
                results.setdefault(setting, []).append(got)
                print(f"round {r} {setting}: {got}", file=sys.stderr, flush=True)
    base_key = "sparse 1x1" if "sparse 1x1" in results else args.settings[0]
    base = np.median([g["rows_per_s"] for g in results[base_key]])
    table = {}
    print(f"| gradients | processes x threads | rows/s (median) | vs {base_key} | MB sent per step and rank | "
          f"peak RssAnon per rank (MB) |")
    print("|---|---|---|---|---|---|")
    for key, runs in results.items():
        speed = float(np.median([g["rows_per_s"] for g in runs]))
        sent, peak = runs[-1]["mb_per_step"], float(np.median([g["peak_rss_anon_mb"] for g in runs]))
        table[key] = {"rows_per_s": speed, f"vs_{base_key.replace(' ', '_')}": speed / base, "mb_per_step": sent,
                      "peak_rss_anon_mb": peak, "runs": runs}
        print(f"| {key.split()[0]} | {key.split()[1]} | {speed:.0f} | {speed / base:.2f} | "
              f"{'-' if sent is None else f'{sent:.2f}'} | {peak:.0f} |")
    if args.out:
        write_json(args.out, table)
    return table


if __name__ == "__main__":
    main()

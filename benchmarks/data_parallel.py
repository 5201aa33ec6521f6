"""Data-parallel throughput and bytes exchanged: tools/trainer.py run as a user runs it, one epoch each.

    python benchmarks/data_parallel.py -m models/rank/deepfm/config_bigdata.yaml --data DIR
        [--rounds 2] [--out FILE.json] [-o key=value ...]

Settings (same data, same global work): 1 process x 1 thread and 1 x 2 threads (OMP_NUM_THREADS),
and 2 processes x 1 thread (paddle.distributed.launch, gloo), each with dense gradients (paddle's
DataParallel all-reduce of whole tables) and with row-sparse gradients + lazy Adam (the touched
rows exchanged, tools/utils/parallel.py). Throughput = the epoch's rows (all ranks) / its seconds,
from the trainer's "epoch 0 done" line; bytes = what each rank contributes per step (dense: every
gradient; sparse: its logged per-step average). Rounds alternate the settings.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from models.common.artifacts import write_json  # noqa: E402
MODES = {"dense": ["hyper_parameters.sparse_gradients=false", "hyper_parameters.optimizer.lazy_mode=false"],
         "sparse": ["hyper_parameters.sparse_gradients=true", "hyper_parameters.optimizer.lazy_mode=true"]}
LAYOUTS = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}


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
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
    log = done.stdout + done.stderr
    if processes > 1 and os.path.isfile(f"{folder}/logs/workerlog.0"):
        log = open(f"{folder}/logs/workerlog.0").read()
    if done.returncode:
        raise RuntimeError(f"{mode} {layout} failed:\n{log[-3000:]}")
    summary = re.search(r"epoch 0 done: .*?samples: (\d+), seconds: ([\d.]+)", log)
    sent = re.search(r"(?:gradient exchange:|every gradient,) ([\d.]+) MB sent per step", log)
    return {"rows": int(summary.group(1)), "seconds": float(summary.group(2)),
            "rows_per_s": int(summary.group(1)) / float(summary.group(2)),
            "mb_per_step": float(sent.group(1)) if sent else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--config", required=True)
    parser.add_argument("--data", required=True, help="training data folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out")
    parser.add_argument("-o", "--opt", nargs="*", default=[])
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in MODES:
                for layout in LAYOUTS:
                    folder = os.path.join(tmp, f"{mode}_{layout}_{r}")
                    os.makedirs(folder)
                    got = run(os.path.abspath(args.config), os.path.abspath(args.data), mode, layout, args.opt, folder)
                    results.setdefault(f"{mode} {layout}", []).append(got)
                    print(f"round {r} {mode} {layout}: {got}", file=sys.stderr, flush=True)
    base = np.median([g["rows_per_s"] for g in results["sparse 1x1"]])
    table = {}
    print("| gradients | processes x threads | rows/s (median) | vs sparse 1x1 | MB sent per step and rank |")
    print("|---|---|---|---|---|")
    for key, runs in results.items():
        speed = float(np.median([g["rows_per_s"] for g in runs]))
        sent = runs[-1]["mb_per_step"]
        table[key] = {"rows_per_s": speed, "vs_sparse_1x1": speed / base, "mb_per_step": sent, "runs": runs}
        print(f"| {key.split()[0]} | {key.split()[1]} | {speed:.0f} | {speed / base:.2f} | "
              f"{'-' if sent is None else f'{sent:.2f}'} |")
    if args.out:
        write_json(args.out, table)
    return table


if __name__ == "__main__":
    main()

"""Train and evaluate every model on its shipped sample data and print a table.

For each models/<area>/<model>/config.yaml: tools/trainer.py, then tools/infer.py (which evaluates
each model by its paradigm's protocol); outputs go to a temporary folder. The numbers
come from the metrics.json the runners write ("headline"), not from parsing logs. The "data"
column is the config's top-level ``sample_data`` key (synthetic or real; the runners ignore it).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tools.utils.config import ConfigError, read_config  # noqa: E402

SAMPLE_KINDS = ("synthetic", "real")


def sample_data(config):
    """What a config's sample data is, from its top-level ``sample_data`` key: "synthetic",
    "real", or "?" when the key is missing, unreadable or has another value."""
    try:
        kind = read_config(config).get("sample_data")
    except ConfigError:
        return "?"
    return kind if kind in SAMPLE_KINDS else "?"


def run(command, log_file):
    with open(log_file, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        return subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode


def demo_model(config, work_dir):
    ckpt, infer_dir, log_file = (os.path.join(work_dir, n) for n in ("ckpt", "infer", "log.txt"))
    paths = [f"runner.model_save_path={ckpt}", f"runner.infer_load_path={ckpt}"]
    start = time.perf_counter()
    status = run([sys.executable, os.path.join(REPO, "tools", "trainer.py"), "-m", config, "-o", *paths], log_file)
    if status == 0:
        status = run([sys.executable, os.path.join(REPO, "tools", "infer.py"), "-m", config, "-o", *paths,
                      f"runner.infer_output_path={infer_dir}"], log_file)
    seconds = time.perf_counter() - start
    if status != 0:
        return None, seconds, log_file
    with open(os.path.join(infer_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)["headline"], seconds, log_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="model folder names to run (default: all)")
    args = parser.parse_args(argv)
    configs = sorted(glob.glob(os.path.join(REPO, "models", "*", "*", "config.yaml")))
    if args.only:
        configs = [c for c in configs if os.path.basename(os.path.dirname(c)) in args.only]
    rows, failed = [], []
    with tempfile.TemporaryDirectory(prefix="demo-") as tmp:
        for config in configs:
            name = os.path.relpath(os.path.dirname(config), os.path.join(REPO, "models"))
            print(f"running {name} ...", flush=True)
            work_dir = os.path.join(tmp, name.replace(os.sep, "_"))
            os.makedirs(work_dir)
            data = sample_data(config)
            headline, seconds, log_file = demo_model(config, work_dir)
            if headline is None:
                failed.append(name)
                with open(log_file, encoding="utf-8") as f:
                    print(f.read()[-4000:], file=sys.stderr)
                rows.append((name, data, "FAILED", "", seconds))
                continue
            for metric, value in headline.items():
                rows.append((name, data, metric, f"{value:.4f}" if isinstance(value, float) else str(value), seconds))
    width = max(len(r[0]) for r in rows) if rows else 5
    print(f"\n{'model':<{width}}  {'data':<9}  {'metric':<24} {'value':>10} {'time (s)':>9}")
    for name, data, metric, value, seconds in rows:
        print(f"{name:<{width}}  {data:<9}  {metric:<24} {value:>10} {seconds:>9.1f}")
    if any(r[1] == "synthetic" for r in rows):
        print("\nsynthetic: labels from a hidden model, written by a committed make_sample.py (the model's "
              "data/, or datasets/movielens/sample/ for the retrieval models; see the model's readme); "
              "not comparable with published figures")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

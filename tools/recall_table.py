"""Train and evaluate every retrieval model (models/recall/*) in every mode on one preprocessed
MovieLens retrieval folder; write the results as JSON, a Markdown table and a Recall@K plot.

    python tools/recall_table.py --data datasets/movielens/data/ml-100k/retrieval --out results/ml100k

Each run is tools/trainer.py then tools/infer.py on the model's config.yaml with the data keys
pointed at ``--data`` and ``-o hyper_parameters.mode=<mode>``; everything else is the model's
config (its default negatives, similarity, temperature). The most-popular baseline comes from
the same split. ``--modes default`` runs each model's own mode only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from models.common.retrieval import write_recall_plot  # noqa: E402
from tools.utils.config import read_config  # noqa: E402

MODELS = ("dssm", "youtube_dnn", "youtube_sbc", "facebook_dssm")
NAMES = {"dssm": "DSSM", "youtube_dnn": "YoutubeDNN", "youtube_sbc": "YoutubeSBC", "facebook_dssm": "FacebookDSSM"}


def run(model, mode, args, work):
    config = os.path.join(REPO, "models", "recall", model, "config.yaml")
    data = os.path.abspath(args.data)
    overrides = [f"runner.model_save_path={work}", f"runner.train_data_dir={data}/train",
                 f"runner.test_data_dir={data}/test", f"hyper_parameters.dataset_info_path={data}/dataset.json",
                 f"runner.epochs={args.epochs}", f"runner.infer_start_epoch={args.epochs - 1}",
                 f"runner.infer_end_epoch={args.epochs}", f"runner.train_batch_size={args.batch_size}",
                 "runner.print_interval=100000", f"runner.seed={args.seed}",
                 f"hyper_parameters.retrieval.index={args.index}"]
    if mode != "default":
        overrides.append(f"hyper_parameters.mode={mode}")
    for script in ("trainer.py", "infer.py"):
        done = subprocess.run([sys.executable, os.path.join(REPO, "tools", script), "-m", config, "-o", *overrides],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{model} {mode}: {script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    with open(os.path.join(work, "metrics.json"), encoding="utf-8") as f:
        train = json.load(f)["train"]
    epoch = args.epochs - 1
    with open(os.path.join(work, "infer", f"retrieval_epoch{epoch}.json"), encoding="utf-8") as f:
        result = json.load(f)
    result["train_seconds"] = sum(e["seconds"] for e in train)
    result["train_ins_per_sec"] = train[-1]["ins_per_sec"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="preprocessed folder (train/, test/, dataset.json)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--index", choices=("flat", "hnsw"), default="hnsw")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--modes", nargs="*", default=["point", "pair", "list"], help="modes, or 'default'")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for model in args.models:
        default = read_config(os.path.join(REPO, "models", "recall", model, "config.yaml")).get("hyper_parameters.mode")
        for mode in args.modes:
            with tempfile.TemporaryDirectory(prefix=f"recall-{model}-") as work:
                result = run(model, mode, args, work)
            result.update({"model": model, "default_mode": result["mode"] == default})
            results.append(result)
            m = result["metrics"]
            print(f"{model:14s} {result['mode']:6s} hit@10 {m['hit@10']:.4f} hit@50 {m['hit@50']:.4f} "
                  f"hit@100 {m['hit@100']:.4f} ndcg@10 {m['ndcg@10']:.4f} popular hit@50 {m['popular_hit@50']:.4f} "
                  f"({result['train_seconds']:.0f} s)", flush=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"data": os.path.abspath(args.data), "epochs": args.epochs, "batch_size": args.batch_size,
                   "seed": args.seed, "results": results}, f, indent=1)
    lines = ["| model | mode | Hit@10 | Hit@50 | Hit@100 | NDCG@10 | NDCG@50 | MRR@10 | HNSW recall vs exact @50 | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]
        hnsw = f"{m['hnsw_recall_vs_exact@50']:.3f}" if "hnsw_recall_vs_exact@50" in m else "-"
        name = NAMES.get(r["model"], r["model"]) + (" (default)" if r["default_mode"] else "")
        lines.append(f"| {name} | {r['mode']} | {m['hit@10']:.4f} | {m['hit@50']:.4f} | {m['hit@100']:.4f} | "
                     f"{m['ndcg@10']:.4f} | {m['ndcg@50']:.4f} | {m['mrr@10']:.4f} | {hnsw} | {r['train_seconds']:.0f} |")
    m = results[0]["metrics"]
    lines.append(f"| most popular | - | {m['popular_hit@10']:.4f} | {m['popular_hit@50']:.4f} | {m['popular_hit@100']:.4f} | "
                 f"{m['popular_ndcg@10']:.4f} | {m['popular_ndcg@50']:.4f} | {m['popular_mrr@10']:.4f} | - | - |")
    with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    curves = {f"{NAMES.get(r['model'], r['model'])} ({r['mode']})": r["recall_curve"] for r in results if r["default_mode"]}
    curves["most popular"] = results[0]["popular_recall_curve"]
    write_recall_plot(os.path.join(args.out, "recall_at_k.svg"), curves, title="Recall@K (default modes)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Recall then rank through the service, scored on the leave-last-out test users:

    python tools/two_stage.py -m models/recall/dssm/config_bigdata.yaml [-o ...] \\
        --recall-export DIR --rank-export DIR [--candidates 100] [--k 10] [--out FILE.json]

Starts tools/serve.py on a free loopback port with both exports, then for every test user of the
retrieval config (runner.test_data_dir; their training items, from runner.train_data_dir, are
excluded from both lists, as a service does not recommend what a user has seen): POST /recall
(``--candidates`` items) and POST /recommend (the same candidates ranked by the ranker, top ``--k``).
Reports Hit@k and NDCG@k of the retrieval model alone (its first k) and of the two-stage list,
and the candidates' Hit@candidates (the most the ranker can reach).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()

import numpy as np  # noqa: E402

from models.common.artifacts import write_json  # noqa: E402
from models.common.data.loader import create_dataset  # noqa: E402
from models.common.loading import load_reader  # noqa: E402
from models.common.metrics import retrieval_metrics  # noqa: E402
from models.common.serving import ExportError, LoadedExport  # noqa: E402
from tools.serve import ServiceProcess, expect_config  # noqa: E402
from tools.utils.runtime import USER_ERRORS, add_config_arguments, load_model  # noqa: E402


def user_rows(test, features):
    """Each test row's user as a request object (sequences cut to their length)."""
    for r in range(len(test)):
        row = test.take([r])
        yield {n: (row[n][0, :int(row[f"{n}_length"][0])].tolist() if spec["kind"] == "sequence" else int(row[n][0]))
               for n, spec in features.items()}


def evaluate(service, test, seen, candidates, k, log=print):
    """-> {metric: value} of recall alone and recall + rank over the rows of ``test``."""
    status, schema = service.call("GET", "/schema")
    features = schema["recall"]["graphs"]["user_tower"]["features"]
    recalled, ranked, targets = [], [], test.column("item_id").astype(np.int64)
    start = time.perf_counter()
    for r, user in enumerate(user_rows(test, features)):
        exclude = sorted(seen.get(user["user_id"], ()))
        status, answer = service.call("POST", "/recall", {"model": "recall", "user": user, "k": candidates,
                                                          "exclude": exclude})
        if status != 200:
            raise RuntimeError(f"test row {r}: /recall answered {status}: {answer['error']}")
        recalled.append(answer["items"])
        status, answer = service.call("POST", "/recommend", {"recall_model": "recall", "rank_model": "rank", "user": user,
                                                             "k": k, "candidates": candidates, "exclude": exclude})
        if status != 200:
            raise RuntimeError(f"test row {r}: /recommend answered {status}: {answer['error']}")
        ranked.append([item["item"] for item in answer["items"]])
        if (r + 1) % 200 == 0:
            log(f"{r + 1} / {len(test)} users")
    seconds = time.perf_counter() - start
    alone = retrieval_metrics(np.array(recalled), targets, (k, candidates))
    both = retrieval_metrics(np.array(ranked), targets, (k,))
    return {"users": len(targets), "candidates": candidates, "k": k,
            f"recall_hit@{k}": alone[f"hit@{k}"], f"recall_ndcg@{k}": alone[f"ndcg@{k}"],
            f"recall_hit@{candidates}": alone[f"hit@{candidates}"],
            f"two_stage_hit@{k}": both[f"hit@{k}"], f"two_stage_ndcg@{k}": both[f"ndcg@{k}"],
            "seconds": seconds, "requests_per_second": 2 * len(targets) / seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--recall-export", required=True, help="tools/export.py folder of a two-tower model")
    parser.add_argument("--rank-export", required=True, help="tools/export.py folder of a ranker with item and user "
                                                              "tables (MetaEmb's DeepFM base)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        config, dm = load_model(args.config, args.opt)
        test = create_dataset(load_reader(config, "infer"), config, "infer")
        train = create_dataset(load_reader(config, "train"), config, "train")
        seen = {}
        for user, item in zip(train.column("user_id").tolist(), train.column("item_id").tolist()):
            seen.setdefault(user, set()).add(item)
        expect_config({"recall": LoadedExport(args.recall_export, threads=1)}, config, dm)
        with ServiceProcess("--export", f"recall={args.recall_export}", f"rank={args.rank_export}") as service:
            values = evaluate(service, test, seen, args.candidates, args.k)
    except (ExportError, *USER_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    k, n = args.k, args.candidates
    print(f"\n{values['users']} test users, their training items excluded")
    print(f"| list | Hit@{k} | NDCG@{k} |\n|---|---|---|")
    print(f"| recall alone (top {k} of the retrieval model) | {values[f'recall_hit@{k}']:.4f} | "
          f"{values[f'recall_ndcg@{k}']:.4f} |")
    print(f"| recall {n} + rank, top {k} | {values[f'two_stage_hit@{k}']:.4f} | {values[f'two_stage_ndcg@{k}']:.4f} |")
    print(f"(the {n} candidates hold the held-out item for {values[f'recall_hit@{n}']:.4f} of the users; "
          f"{values['requests_per_second']:.0f} requests/s)")
    if args.out:
        write_json(args.out, values)
    return values


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Recall then rank on MovieLens-100K, from raw data to a scored two-stage list and a running service:
#
#   bash examples/recall_then_rank.sh [--raw DIR] [--data DIR] [--out DIR] [--rank-epochs N] [--serve PORT]
#
#   --raw DIR       a raw ml-100k copy (u.data ...; default: download it, checked against its MD5)
#   --data DIR      preprocessed data (default datasets/movielens/data/ml-100k; reused when present)
#   --out DIR       checkpoints, exports and two_stage.json (default output/recall_then_rank)
#   --rank-epochs   the ranker's epochs (default: its config's, 4)
#   --serve PORT    afterwards, serve both exports on 127.0.0.1:PORT until interrupted
#
# 1. datasets/movielens/run.sh: the leave-last-out retrieval split and the ranker's rows (the same
#    training interactions + popularity-drawn negatives);
# 2. DSSM (models/recall/dssm/config_bigdata.yaml) and MetaEmb's DeepFM base
#    (models/rank/metaemb/config_ml100k_rank.yaml) trained and exported (tools/export.py);
# 3. tools/two_stage.py: through tools/serve.py, every test user's 100 recalled candidates ranked,
#    Hit@10 / NDCG@10 of the two-stage list beside recall alone.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RAW= DATA=datasets/movielens/data/ml-100k OUT=output/recall_then_rank RANK_EPOCHS= SERVE=
while [ $# -gt 0 ]; do
    case "$1" in
        --raw) RAW=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --rank-epochs) RANK_EPOCHS=$2; shift 2 ;;
        --serve) SERVE=$2; shift 2 ;;
        *) echo "recall_then_rank.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
DATA=$(absolute "$DATA") OUT=$(absolute "$OUT")

steps=""
for step in retrieval ranking; do [ -f "$DATA/$step/manifest.json" ] || steps="$steps $step"; done
if [ -n "$steps" ]; then
    bash datasets/movielens/run.sh --dataset ml-100k --out "$DATA" --steps "${steps# }" ${RAW:+--raw "$RAW"}
fi

R=$DATA/retrieval
DSSM=(-m models/recall/dssm/config_bigdata.yaml -o "runner.train_data_dir=$R/train" "runner.test_data_dir=$R/test"
      "hyper_parameters.dataset_info_path=$R/dataset.json" "runner.model_save_path=$OUT/dssm" "runner.overwrite=true")
RANK=(-m models/rank/metaemb/config_ml100k_rank.yaml -o "runner.train_data_dir=$DATA/ranking/train"
      "runner.valid_data_dir=$DATA/ranking/valid" "runner.model_save_path=$OUT/ranker" "runner.overwrite=true"
      ${RANK_EPOCHS:+"runner.epochs=$RANK_EPOCHS"})
"$PYTHON" tools/trainer.py "${DSSM[@]}"
"$PYTHON" tools/trainer.py "${RANK[@]}"
"$PYTHON" tools/export.py "${DSSM[@]}" --out "$OUT/export/dssm" --replace
"$PYTHON" tools/export.py "${RANK[@]}" --out "$OUT/export/ranker" --replace
"$PYTHON" tools/two_stage.py "${DSSM[@]}" --recall-export "$OUT/export/dssm" --rank-export "$OUT/export/ranker" \
    --out "$OUT/two_stage.json"
if [ -n "$SERVE" ]; then
    exec "$PYTHON" tools/serve.py --export "recall=$OUT/export/dssm" "rank=$OUT/export/ranker" --port "$SERVE"
fi
echo "serve them: $PYTHON tools/serve.py --export recall=$OUT/export/dssm rank=$OUT/export/ranker --port 8080"

#!/usr/bin/env bash
# MovieLens for the retrieval models (models/recall/*/config_bigdata.yaml), MetaEmb
# (models/rank/metaemb), the pretrained-vector two-tower model (models/recall/pretrained_dssm) and
# the ranker of a recall-then-rank pipeline (models/rank/metaemb/config_ml100k_rank.yaml).
#
#   bash datasets/movielens/run.sh                        download ml-1m, verify, unpack, preprocess
#   bash datasets/movielens/run.sh --dataset ml-100k      the same for ml-100k
#   bash datasets/movielens/run.sh --raw DIR              preprocess a raw copy you already have
#                                                         (ml-100k: u.data ...; ml-1m: ratings.dat ...)
#   options: --out DIR (default: data/<ml-1m|ml-100k> next to this script), --max-history N (50),
#            --steps "retrieval metaemb pretrained ranking" (the preprocessing steps to run; default: all;
#            ranking reads OUT/retrieval, so it runs after retrieval or on an earlier run's),
#            --replace (replace the steps' earlier output; without it a non-empty OUT/<step> is refused)
#
# Result: OUT/retrieval/{train/train.txt, test/test.txt, dataset.json} (leave-last-out by time,
# see preprocess_retrieval.py), OUT/metaemb/ (old/new item splits, preprocess_metaemb.py),
# OUT/pretrained/ (vectors and pairs, make_pretrained_vectors.py) and OUT/ranking/ (the retrieval
# training rows + negatives in MetaEmb's format, preprocess_ranking.py). Every preprocessing step
# in STEPS runs on the same raw copy; a step is a shell function preprocess_<name> RAW OUT (add
# one and list it in STEPS to extend).
# Each OUT/<step> is written whole (staged, renamed into place) with a manifest.json, and each of
# its data folders with its own, all naming the run's id_space: a killed run leaves the earlier
# output or none, never half of one. The archives are checked against GroupLens' published MD5
# (and size, where known) before unpacking. MovieLens may not be redistributed: keep the data
# out of the repository. Exit status: 2 for a usage or input error (bad option, --raw folder
# without ratings or with a bad line, OUT/<step> not empty without --replace), 4 for a bad archive.
#
# Environment: PYTHON (default: the repository's .venv/bin/python, else python3); MOVIELENS_URL,
# MOVIELENS_MD5 (a mirror and its archive's MD5), MOVIELENS_DOWNLOADS (default: downloads/ here).
set -euo pipefail
fail() { echo "run.sh: $*" >&2; exit 2; }  # a usage or input error
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$here/../../.venv/bin/python" ]; then PYTHON=$here/../../.venv/bin/python; else PYTHON=python3; fi
fi

STEPS="retrieval metaemb pretrained ranking"  # in this order: ranking reads OUT/retrieval
preprocess_retrieval() {  # RAW OUT
    "$PYTHON" "$here/preprocess_retrieval.py" --raw "$1" --out "$2/retrieval" --max-history "$MAX_HISTORY" $REPLACE
}
preprocess_metaemb() {  # RAW OUT
    "$PYTHON" "$here/preprocess_metaemb.py" --raw "$1" --out "$2/metaemb" $REPLACE
}
preprocess_pretrained() {  # RAW OUT
    "$PYTHON" "$here/make_pretrained_vectors.py" --raw "$1" --out "$2/pretrained" $REPLACE
}
preprocess_ranking() {  # RAW OUT
    "$PYTHON" "$here/preprocess_ranking.py" --raw "$1" --retrieval "$2/retrieval" --out "$2/ranking" $REPLACE
}

DATASET=ml-1m RAW="" OUT="" MAX_HISTORY=50 REPLACE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dataset) [ $# -ge 2 ] && [ -n "$2" ] || fail "--dataset needs ml-1m or ml-100k"
                   DATASET=$2; shift 2 ;;
        --raw) [ $# -ge 2 ] && [ -d "$2" ] || fail "usage: run.sh --raw DIR (an existing folder)"
               RAW=$(absolute "$2"); shift 2 ;;
        --out) [ $# -ge 2 ] && [ -n "$2" ] || fail "--out needs a folder"
               OUT=$(absolute "$2"); shift 2 ;;
        --max-history) [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] || fail "--max-history needs a number >= 1"
                       MAX_HISTORY=$2; shift 2 ;;
        --steps) [ $# -ge 2 ] && [ -n "${2// /}" ] || fail "--steps needs a list (known: $STEPS)"
                 for step in $2; do
                     declare -F "preprocess_$step" >/dev/null || fail "--steps: unknown step $step (known: $STEPS)"
                 done
                 STEPS=$2; shift 2 ;;
        --replace) REPLACE=--replace; shift ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) fail "unknown option $1 (see run.sh --help)" ;;
    esac
done

# The output folder, and the steps' folders refused before anything is downloaded or written.
if [ -n "$RAW" ]; then
    KIND=$("$PYTHON" "$here/raw.py" "$RAW") || exit 2  # the path is an argument, never code
else
    case "$DATASET" in
        ml-1m|ml-100k) KIND=$DATASET ;;
        *) fail "--dataset must be ml-1m or ml-100k, got $DATASET" ;;
    esac
fi
OUT=${OUT:-$here/data/$KIND}
if [ -z "$REPLACE" ]; then
    for step in $STEPS; do
        if [ -d "$OUT/$step" ] && [ -n "$(find "$OUT/$step" -mindepth 1 -maxdepth 1 ! -name '.*' -print -quit)" ]; then
            fail "$OUT/$step already holds files; choose another --out, or --replace to replace them"
        fi
    done
fi

if [ -z "$RAW" ]; then
    case "$DATASET" in
        ml-1m)   MD5=c4d9eecfca2ab87c1945afe126590906 SIZE="" ;;
        ml-100k) MD5=0e33842e24a9c977be4e0107933c0723 SIZE=4924029 ;;
    esac
    if [ -n "${MOVIELENS_MD5:-}" ]; then MD5=$MOVIELENS_MD5 SIZE=""; fi  # another mirror's archive
    URL=${MOVIELENS_URL:-https://files.grouplens.org/datasets/movielens/$DATASET.zip}
    DOWNLOADS=${MOVIELENS_DOWNLOADS:-$here/downloads}
    mkdir -p "$DOWNLOADS" && cd "$DOWNLOADS"
    ARCHIVE=$DATASET.zip
    if [ ! -f "$ARCHIVE" ]; then
        if command -v wget >/dev/null; then wget -O "$ARCHIVE.part" "$URL"; else curl -fL -o "$ARCHIVE.part" "$URL"; fi
        mv "$ARCHIVE.part" "$ARCHIVE"
    fi
    if [ -n "$SIZE" ] && [ "$(wc -c < "$ARCHIVE")" -ne "$SIZE" ]; then
        echo "$ARCHIVE has $(wc -c < "$ARCHIVE") bytes, expected $SIZE (delete it to download again)" >&2; exit 4
    fi
    actual=$(md5sum "$ARCHIVE" | cut -d' ' -f1)
    if [ "$actual" != "$MD5" ]; then
        echo "checksum mismatch for $ARCHIVE: MD5 $actual, expected $MD5 (delete it to download again)" >&2; exit 4
    fi
    rm -rf "$DATASET" && "$PYTHON" -m zipfile -e "$ARCHIVE" .
    RAW=$DOWNLOADS/$DATASET
fi

mkdir -p "$OUT"
for step in $STEPS; do
    echo "preprocessing ($step): $RAW -> $OUT/$step"
    status=0
    "preprocess_$step" "$RAW" "$OUT" || status=$?
    [ "$status" -eq 0 ] || exit "$status"  # 2: the step named the input error in one line
done
echo "data ready: $OUT ($STEPS)"

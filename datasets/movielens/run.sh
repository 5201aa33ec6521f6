#!/usr/bin/env bash
# MovieLens for the retrieval models (models/recall/*/config_bigdata.yaml), MetaEmb
# (models/rank/metaemb) and the pretrained-vector two-tower model (models/recall/pretrained_dssm).
#
#   bash datasets/movielens/run.sh                        download ml-1m, verify, unpack, preprocess
#   bash datasets/movielens/run.sh --dataset ml-100k      the same for ml-100k
#   bash datasets/movielens/run.sh --raw DIR              preprocess a raw copy you already have
#                                                         (ml-100k: u.data ...; ml-1m: ratings.dat ...)
#   options: --out DIR (default: data/<ml-1m|ml-100k> next to this script), --max-history N (50),
#            --steps "retrieval metaemb pretrained" (the preprocessing steps to run; default: all)
#
# Result: OUT/retrieval/{train/train.txt, test/test.txt, dataset.json} (leave-last-out by time,
# see preprocess_retrieval.py), OUT/metaemb/ (old/new item splits, preprocess_metaemb.py) and
# OUT/pretrained/ (vectors and pairs, make_pretrained_vectors.py). Every preprocessing step in STEPS runs on the same raw copy; a
# step is a shell function preprocess_<name> RAW OUT (add one and list it in STEPS to extend).
# The archives are checked against GroupLens' published MD5 (and size, where known) before
# unpacking. MovieLens may not be redistributed: keep the data out of the repository.
#
# Environment: PYTHON (default: the repository's .venv/bin/python, else python3); MOVIELENS_URL,
# MOVIELENS_MD5 (a mirror and its archive's MD5), MOVIELENS_DOWNLOADS (default: downloads/ here).
set -euo pipefail
absolute() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$here/../../.venv/bin/python" ]; then PYTHON=$here/../../.venv/bin/python; else PYTHON=python3; fi
fi

STEPS="retrieval metaemb pretrained"
preprocess_retrieval() {  # RAW OUT
    "$PYTHON" "$here/preprocess_retrieval.py" --raw "$1" --out "$2/retrieval" --max-history "$MAX_HISTORY"
}
preprocess_metaemb() {  # RAW OUT
    "$PYTHON" "$here/preprocess_metaemb.py" --raw "$1" --out "$2/metaemb"
}
preprocess_pretrained() {  # RAW OUT
    "$PYTHON" "$here/make_pretrained_vectors.py" --raw "$1" --out "$2/pretrained"
}

DATASET=ml-1m RAW="" OUT="" MAX_HISTORY=50
while [ $# -gt 0 ]; do
    case "$1" in
        --dataset) DATASET=${2:?--dataset needs ml-1m or ml-100k}; shift 2 ;;
        --raw) [ $# -ge 2 ] && [ -d "$2" ] || { echo "usage: run.sh --raw DIR (an existing folder)" >&2; exit 2; }
               RAW=$(absolute "$2"); shift 2 ;;
        --out) OUT=$(absolute "${2:?--out needs a folder}"); shift 2 ;;
        --max-history) MAX_HISTORY=${2:?--max-history needs a number}; shift 2 ;;
        --steps) for step in ${2:?--steps needs a list}; do
                     declare -F "preprocess_$step" >/dev/null || { echo "--steps: unknown step $step (known: $STEPS)" >&2; exit 2; }
                 done
                 STEPS=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see run.sh --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$RAW" ]; then
    case "$DATASET" in
        ml-1m)   MD5=c4d9eecfca2ab87c1945afe126590906 SIZE="" ;;
        ml-100k) MD5=0e33842e24a9c977be4e0107933c0723 SIZE=4924029 ;;
        *) echo "--dataset must be ml-1m or ml-100k, got $DATASET" >&2; exit 2 ;;
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

KIND=$("$PYTHON" -c "import sys; sys.path.insert(0, '$here/../..'); from datasets.movielens import raw; print(raw.detect('$RAW'))")
OUT=${OUT:-$here/data/$KIND}
mkdir -p "$OUT"
for step in $STEPS; do
    echo "preprocessing ($step): $RAW -> $OUT/$step"
    "preprocess_$step" "$RAW" "$OUT"
done
echo "data ready: $OUT ($STEPS)"

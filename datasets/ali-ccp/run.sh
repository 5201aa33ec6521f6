#!/usr/bin/env bash
# Ali-CCP -> PaddleRec's Ali-CCP format (sample_id,click,purchase,<field>:<id>,...) for ESMM / MMoE.
#
#   bash datasets/ali-ccp/run.sh                # download PaddleRec's preprocessed 10w files (BOS)
#   bash datasets/ali-ccp/run.sh --raw DIR      # DIR: the raw Tianchi files sample_skeleton_{train,test}.csv +
#                                               # common_features_{train,test}.csv (joined and remapped by
#                                               # preprocess.py), or PaddleRec's traindata_10w.csv/testdata_10w.csv
#   bash datasets/ali-ccp/run.sh --out DIR      # output parent folder (default: this folder)
#   bash datasets/ali-ccp/run.sh --replace      # replace an earlier run's output in <out> (else refused)
#   bash datasets/ali-ccp/run.sh --raw DIR -- --format columnar   # options after -- go to preprocess.py
#
# Output: <out>/train_data/, <out>/test_data/ (the folders models/multitask/esmm/config_bigdata.yaml
# reads), each with a manifest.json (its files, bytes, rows and the id_space fingerprint of the
# ids), and <out>/meta.json (sparse_feature_number, counts, SHA-256s of the sources, the same id_space).
# A non-empty train_data/test_data or an existing meta.json is refused (exit status 2) unless
# --replace; a run never leaves half its output, nor a mix of two runs, under the final names.
#
# The raw Ali-CCP files (Tianchi data set 408) need a Tianchi login: download them by hand and
# use --raw. Verification: no checksums are published; every row is checked while converting
# (column count, feature_num against the features present, known common_feature_index, labels
# 0/1, no purchase without a click); PaddleRec's files are checked to be non-empty, and their
# first line to have the Ali-CCP format. SHA-256s of what was used are written to <out>/sources.sha256.
#
# Environment: PYTHON (default <repo>/.venv/bin/python, else python3), ALICCP_BASE_URL (mirror
# of https://paddlerec.bj.bcebos.com/esmm).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${ALICCP_BASE_URL:-https://paddlerec.bj.bcebos.com/esmm}"
USAGE_LINES=16
source "$HERE/../common.sh"  # die (exit 2), fail (exit 1), usage, parse_args (RAW, OUT, REPLACE_ARGS, EXTRA), PY
parse_args "$@"

# PaddleRec's preprocessed files: first line must look like id,0|1,0|1,<field>:<id>,...
check_paddlerec_file() {
  [ -s "$1" ] || die "$1 is empty or missing"
  head -n 1 "$1" | grep -Eq '^[^,]+,[01],[01](,[0-9_]+:[0-9]+)*[[:space:]]*$' \
    || die "$1, line 1: not in PaddleRec's Ali-CCP format (sample_id,click,purchase,<field>:<id>,...)"
}

install_paddlerec() {  # $1: folder with traindata_10w.csv and testdata_10w.csv
  local f
  for f in traindata_10w.csv testdata_10w.csv; do check_paddlerec_file "$1/$f"; done
  "$PY" "$HERE/preprocess.py" --paddlerec "$1" --out "$OUT" ${REPLACE_ARGS[@]+"${REPLACE_ARGS[@]}"}
}

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
if [ -z "$RAW" ]; then
  RAW="$HERE/raw"
  mkdir -p "$RAW"
  for f in traindata_10w.csv testdata_10w.csv; do
    if [ ! -s "$RAW/$f" ]; then
      echo "downloading $BASE/$f"
      if command -v curl >/dev/null 2>&1; then curl -fL --retry 5 -o "$RAW/$f.part" "$BASE/$f" || fail "download of $f failed"
      elif command -v wget >/dev/null 2>&1; then wget --tries=5 -O "$RAW/$f.part" "$BASE/$f" || fail "download of $f failed"
      else fail "need curl or wget"; fi
      mv -f "$RAW/$f.part" "$RAW/$f"
    fi
  done
  install_paddlerec "$RAW"
else
  [ -d "$RAW" ] || die "--raw $RAW is not a folder"
  RAW="$(cd "$RAW" && pwd)"
  if [ -f "$RAW/sample_skeleton_train.csv" ]; then
    for f in sample_skeleton_train.csv common_features_train.csv sample_skeleton_test.csv common_features_test.csv; do
      [ -f "$RAW/$f" ] || die "$RAW has sample_skeleton_train.csv but no $f"
    done
    echo "joining and remapping the raw Ali-CCP files in $RAW -> $OUT with $PY"
    "$PY" "$HERE/preprocess.py" --raw "$RAW" --out "$OUT" ${REPLACE_ARGS[@]+"${REPLACE_ARGS[@]}"} \
      ${EXTRA[@]+"${EXTRA[@]}"}
  elif [ -f "$RAW/traindata_10w.csv" ]; then
    install_paddlerec "$RAW"
  else
    die "$RAW holds neither the raw files (sample_skeleton_train.csv, ...) nor traindata_10w.csv/testdata_10w.csv"
  fi
fi

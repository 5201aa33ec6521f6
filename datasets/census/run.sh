#!/usr/bin/env bash
# UCI census-income (KDD) -> the columnar CSV MMOE and Share-Bottom read (models/common/datasets/census.py).
#
#   bash datasets/census/run.sh                 # download census.tar.gz from UCI, verify, preprocess
#   bash datasets/census/run.sh --raw DIR       # use DIR/census-income.data[.gz] (+ .test[.gz]) or DIR/census.tar.gz
#   bash datasets/census/run.sh --out DIR       # output parent folder (default: this folder)
#   bash datasets/census/run.sh --replace       # replace an earlier run's output in <out> (else refused)
#   bash datasets/census/run.sh -- --seed 7     # anything after -- goes to preprocess.py
#
# Output: <out>/train_data/census_train.csv, <out>/test_data/census_test.csv, each folder with a
# manifest.json (its file, bytes, rows and the id_space fingerprint of the feature layout), and
# <out>/meta.json (the same id_space); the feature count printed at the end is
# hyper_parameters.feature_dim of the configs. An existing output is refused (exit status 2) unless
# --replace; a run never leaves half its output, nor a mix of two runs, under the final names.
# Errors in the arguments or the input: exit status 2.
#
# Verification: UCI publishes no checksum. A download is checked for the row counts of the full
# files (census-income.data 199,523 rows, census-income.test 99,762) and its SHA-256 is recorded
# (census.tar.gz.sha256) and checked on later runs; CENSUS_SHA256 pins a known value. With --raw,
# the counts are reported (a subset, like ../shared/data/census-income/kdd_raw_prefix, is allowed).
#
# Environment: PYTHON (default <repo>/.venv/bin/python, else python3), CENSUS_URL (mirror).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
URL="${CENSUS_URL:-https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/census.tar.gz}"
USAGE_LINES=16
source "$HERE/../common.sh"  # die (exit 2), fail (exit 1), usage, parse_args (RAW, OUT, REPLACE_ARGS, EXTRA), PY, sha256_of
parse_args "$@"

records() { awk 'END { print NR }' "$1"; }  # counts a last line without a newline too

# Unpack DIR/census.tar.gz or DIR/*.gz into the work folder $2 (never modifying DIR); ORIGINS
# tells preprocess.py what each unpacked file came from, so that its messages name the user's file.
ORIGINS=()
unpack() {
  local src="$1" work="$2" name
  if [ -f "$src/census.tar.gz" ] && [ ! -f "$src/census-income.data" ] && [ ! -f "$src/census-income.data.gz" ]; then
    local sha; sha="$(sha256_of "$src/census.tar.gz")"
    echo "sha256 $sha  $src/census.tar.gz"
    if [ -n "${CENSUS_SHA256:-}" ]; then
      [ "$sha" = "$CENSUS_SHA256" ] || die "$src/census.tar.gz: sha256 $sha != CENSUS_SHA256"
    elif [ -f "$src/census.tar.gz.sha256" ]; then
      [ "$sha" = "$(cut -d' ' -f1 < "$src/census.tar.gz.sha256")" ] || die "$src/census.tar.gz: sha256 differs from $src/census.tar.gz.sha256"
    fi
    tar -xzf "$src/census.tar.gz" -C "$work" || die "could not extract $src/census.tar.gz (damaged? delete it and rerun)"
    find "$work" -mindepth 2 -name 'census-income.*' -exec mv -f {} "$work/" \;
    for name in census-income.data census-income.test; do ORIGINS+=(--origin "$name=$src/census.tar.gz ($name)"); done
  fi
  for name in census-income.data census-income.test; do
    if [ -f "$work/$name" ]; then :
    elif [ -f "$src/$name" ]; then ln -sf "$src/$name" "$work/$name"
    elif [ -f "$src/$name.gz" ]; then
      gzip -dc "$src/$name.gz" > "$work/$name" || die "could not decompress $src/$name.gz"
      ORIGINS+=(--origin "$name=$src/$name.gz (decompressed)")
    elif [ -f "$work/$name.gz" ]; then gzip -dc "$work/$name.gz" > "$work/$name" || die "could not decompress $work/$name.gz"
    fi
  done
  [ -f "$work/census-income.data" ] || die "$src holds neither census-income.data[.gz] nor census.tar.gz"
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [ -z "$RAW" ]; then
  RAW="$HERE/raw"
  mkdir -p "$RAW"
  if [ ! -f "$RAW/census.tar.gz" ]; then
    echo "downloading $URL -> $RAW/census.tar.gz"
    if command -v curl >/dev/null 2>&1; then curl -fL --retry 5 -o "$RAW/census.tar.gz.part" "$URL" || fail "download failed"
    elif command -v wget >/dev/null 2>&1; then wget --tries=5 -O "$RAW/census.tar.gz.part" "$URL" || fail "download failed"
    else fail "need curl or wget to download $URL"; fi
    mv -f "$RAW/census.tar.gz.part" "$RAW/census.tar.gz"
    rm -f "$RAW/census.tar.gz.sha256"
  fi
  unpack "$RAW" "$WORK"
  for name in census-income.data census-income.test; do
    expected=199523; [ "$name" = census-income.test ] && expected=99762
    [ -f "$WORK/$name" ] || die "the download has no $name"
    got="$(records "$WORK/$name")"
    [ "$got" = "$expected" ] || die "$name has $got rows, the full UCI file has $expected (delete $RAW/census.tar.gz and rerun)"
  done
  [ -f "$RAW/census.tar.gz.sha256" ] || echo "$(sha256_of "$RAW/census.tar.gz")  census.tar.gz" > "$RAW/census.tar.gz.sha256"
else
  [ -d "$RAW" ] || die "--raw $RAW is not a folder"
  RAW="$(cd "$RAW" && pwd)"
  unpack "$RAW" "$WORK"
  for name in census-income.data census-income.test; do
    [ -f "$WORK/$name" ] && echo "$name: $(records "$WORK/$name") rows"
  done
  true
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
echo "preprocessing $RAW -> $OUT/{train_data,test_data} with $PY"
"$PY" "$HERE/preprocess.py" --raw "$WORK" --out "$OUT" ${ORIGINS[@]+"${ORIGINS[@]}"} ${REPLACE_ARGS[@]+"${REPLACE_ARGS[@]}"} ${EXTRA[@]+"${EXTRA[@]}"}

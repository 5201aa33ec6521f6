#!/usr/bin/env bash
# Criteo Kaggle (Display Advertising Challenge) -> PaddleRec slot format for DeepFM.
#
#   bash datasets/criteo/run.sh                  # download dac.tar.gz, verify, extract, preprocess
#   bash datasets/criteo/run.sh --raw DIR        # use DIR/train.txt or DIR/dac.tar.gz (no download)
#   bash datasets/criteo/run.sh --out DIR        # output parent folder (default: this folder)
#   bash datasets/criteo/run.sh --replace        # replace an earlier run's output in <out> (else refused)
#   bash datasets/criteo/run.sh -- --test-fraction 0.2   # anything after -- goes to preprocess.py
#
# Output: <out>/slot_train_data_full/part-*.txt and <out>/slot_test_data_full/part-*.txt,
# the folders models/rank/deepfm/config_bigdata.yaml reads, each with a manifest.json (its files,
# bytes, rows and the id_space fingerprint shared by the two folders of one run). A non-empty
# output folder is refused (exit status 2) unless --replace; a run never leaves half its output,
# nor a mix of two runs, under the final names. Errors in the arguments or the input: exit status 2.
#
# Checksums: Criteo publishes no checksum for this tarball (none found in its pages or in the
# projects that download it). We therefore verify (1) the downloaded size against the size the
# server announces, (2) the gzip CRC/length of the whole archive while extracting, and (3) that
# train.txt has exactly 45,840,617 lines. The SHA-256 of the tarball is recorded next to it
# (dac.tar.gz.sha256) and checked on later runs; set CRITEO_DAC_SHA256 to pin a known value.
#
# Environment: PYTHON (interpreter; default <repo>/.venv/bin/python, else python3),
# CRITEO_URL (mirror of the tarball), CRITEO_DAC_SHA256 (expected SHA-256 of the tarball).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
URL="${CRITEO_URL:-https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz}"
EXPECTED_LINES=45840617
TRAIN_NAME=slot_train_data_full
TEST_NAME=slot_test_data_full

USAGE_LINES=15
source "$HERE/../common.sh"  # die (exit 2), fail (exit 1), usage, parse_args (RAW, OUT, REPLACE_ARGS, EXTRA), PY, sha256_of
parse_args "$@"

file_size() { wc -c < "$1" | tr -d ' '; }

# Size the server announces for URL: Content-Length of the final (after redirects) response
# if that response is a 200, else empty.
remote_size() {
  local headers=""
  if command -v curl >/dev/null 2>&1; then
    headers="$(curl -sSIL "$URL" 2>/dev/null || true)"
  elif command -v wget >/dev/null 2>&1; then
    headers="$(wget --spider -S "$URL" 2>&1 || true)"
  fi
  printf '%s\n' "$headers" | tr -d '\r' | awk '
    $1 ~ /^HTTP\// { status = $2; n = "" }
    tolower($1) == "content-length:" { n = $2 }
    END { if (status == 200 && n ~ /^[0-9]+$/) print n }'
}

# Download URL to $1 (resumable through $1.part), check its size, then rename.
download() {
  local dest="$1" part="$1.part" expected
  expected="$(remote_size || true)"
  echo "downloading $URL -> $dest (${expected:-unknown} bytes)"
  if [ -n "$expected" ] && [ -f "$part" ] && [ "$(file_size "$part")" = "$expected" ]; then
    echo "already complete: $part"
  elif command -v curl >/dev/null 2>&1; then
    local rc=0
    curl -fL --retry 5 --retry-delay 10 -C - -o "$part" "$URL" || rc=$?
    if [ "$rc" = 33 ]; then  # the server cannot resume: start again from byte 0
      rm -f "$part"
      rc=0
      curl -fL --retry 5 --retry-delay 10 -o "$part" "$URL" || rc=$?
    fi
    [ "$rc" = 0 ] || fail "download failed (curl exit $rc); rerun to resume"
  elif command -v wget >/dev/null 2>&1; then
    wget -c --tries=5 -O "$part" "$URL"
  else
    fail "need curl or wget to download $URL"
  fi
  if [ -n "$expected" ]; then
    [ "$(file_size "$part")" = "$expected" ] \
      || fail "$part has $(file_size "$part") bytes, server announced $expected (rerun to resume)"
  else
    echo "warning: the server announced no size; relying on gzip CRC and line count" >&2
  fi
  mv -f "$part" "$dest"
}

# Check the tarball against CRITEO_DAC_SHA256 or the hash recorded by an earlier good run.
verify_tarball() {
  local tarball="$1"
  TARBALL_SHA="$(sha256_of "$tarball")"
  echo "sha256 $TARBALL_SHA  $tarball"
  if [ -n "${CRITEO_DAC_SHA256:-}" ]; then
    [ "$TARBALL_SHA" = "$CRITEO_DAC_SHA256" ] \
      || die "$tarball: sha256 $TARBALL_SHA != CRITEO_DAC_SHA256 (delete it and rerun)"
  elif [ -f "$tarball.sha256" ]; then
    [ "$TARBALL_SHA" = "$(cut -d' ' -f1 < "$tarball.sha256")" ] \
      || die "$tarball: sha256 differs from the one recorded in $tarball.sha256"
  fi
}

# After a verified extraction: remember the tarball's hash for later runs.
record_tarball() {
  [ -f "$1.sha256" ] || echo "$TARBALL_SHA  $(basename "$1")" > "$1.sha256"
}

# Extract train.txt from the tarball into folder $2 (via a scratch folder, so a crash leaves
# no half train.txt); tar/gzip check the archive's CRC, then we check the line count.
extract() {
  local tarball="$1" dir="$2" tmp="$2/.extract.partial" txt lines
  rm -rf "$tmp"
  mkdir -p "$tmp"
  echo "extracting $tarball (train.txt, test.txt, readme.txt)"
  if ! tar -xzf "$tarball" -C "$tmp"; then
    rm -rf "$tmp"
    die "could not extract $tarball (damaged download? delete it and rerun)"
  fi
  txt="$(find "$tmp" -type f -name train.txt | head -n 1)"
  if [ -z "$txt" ]; then
    rm -rf "$tmp"
    die "no train.txt inside $tarball"
  fi
  lines="$(wc -l < "$txt" | tr -d ' ')"
  if [ "$lines" != "$EXPECTED_LINES" ]; then
    rm -rf "$tmp"
    die "train.txt from $tarball has $lines lines, expected $EXPECTED_LINES (delete it and rerun)"
  fi
  mv -f "$txt" "$dir/train.txt"
  rm -rf "$tmp"
}

find_tarball() {
  local name
  for name in dac.tar.gz criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz; do
    if [ -f "$1/$name" ]; then echo "$1/$name"; return 0; fi
  done
  return 1
}

if [ -z "$RAW" ]; then
  RAW="$HERE/raw"
  mkdir -p "$RAW"
  if [ ! -f "$RAW/train.txt" ]; then
    TARBALL="$(find_tarball "$RAW" || true)"
    if [ -z "$TARBALL" ]; then
      TARBALL="$RAW/dac.tar.gz"
      rm -f "$TARBALL.sha256"  # a record of an earlier, deleted download is void
      download "$TARBALL"
    fi
    verify_tarball "$TARBALL"
    extract "$TARBALL" "$RAW"
    record_tarball "$TARBALL"
  fi
else
  [ -d "$RAW" ] || die "--raw $RAW is not a folder"
  RAW="$(cd "$RAW" && pwd)"
  if [ ! -f "$RAW/train.txt" ]; then
    TARBALL="$(find_tarball "$RAW")" || die "$RAW holds neither train.txt nor dac.tar.gz"
    verify_tarball "$TARBALL"
    extract "$TARBALL" "$RAW"
    record_tarball "$TARBALL"
  fi
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
echo "preprocessing $RAW/train.txt -> $OUT/{$TRAIN_NAME,$TEST_NAME} with $PY"
"$PY" "$HERE/preprocess.py" --raw "$RAW/train.txt" --out "$OUT" \
  --train-name "$TRAIN_NAME" --test-name "$TEST_NAME" ${REPLACE_ARGS[@]+"${REPLACE_ARGS[@]}"} ${EXTRA[@]+"${EXTRA[@]}"}

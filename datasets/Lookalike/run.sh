#!/usr/bin/env bash
# Full Tencent Look-alike data for MetaHeac (models/multitask/metaheac/config_bigdata.yaml).
#
#   bash datasets/Lookalike/run.sh                 download PaddleRec's preprocessed archive, verify, unpack
#   bash datasets/Lookalike/run.sh --archive FILE  the same with an archive you already downloaded
#   bash datasets/Lookalike/run.sh --raw DIR [..]  build the files from the raw Tencent Ad 2018 files in DIR
#                                                  (options: see python preprocess.py --help)
#
# Result (next to this script): train_data/, test_hot_data/, test_cold_data/.
#
# The published archive holds pandas pickles, and unpickling can run arbitrary code: it is only
# unpacked when its SHA-256 matches the one in checksums.sha256 (or $METAHEAC_DATA_SHA256). We
# could not download the archive from here to record its checksum, so on the first download the
# script prints the archive's SHA-256 and stops; check it against a source you trust, then run
#   bash run.sh --trust     (records it in checksums.sha256 and unpacks).
#
# Environment: PYTHON (default: the repository's .venv/bin/python, else python3).
set -euo pipefail
absolute() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
# Paths given by the user are relative to where they ran the script: resolve them before the cd.
if [ "${1:-}" = "--raw" ] || [ "${1:-}" = "--archive" ]; then
    [ $# -ge 2 ] && [ -e "$2" ] || { echo "usage: run.sh $1 PATH (an existing ${1#--})" >&2; exit 2; }
    set -- "$1" "$(absolute "$2")" "${@:3}"
fi
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
    if [ -x ../../.venv/bin/python ]; then PYTHON=../../.venv/bin/python; else PYTHON=python3; fi
fi

if [ "${1:-}" = "--raw" ]; then
    raw=$2; shift 2
    exec "$PYTHON" preprocess.py --raw "$raw" --out . "$@"
fi

URL=${METAHEAC_DATA_URL:-https://paddlerec.bj.bcebos.com/datasets/lookalike/Lookalike_data.rar}
ARCHIVE=$(basename "$URL")
if [ "${1:-}" = "--archive" ]; then
    ARCHIVE=$(basename "$2")
    [ "$2" = "$(pwd)/$ARCHIVE" ] || cp "$2" "$ARCHIVE"
    shift 2
fi
if [ ! -f "$ARCHIVE" ]; then
    if command -v wget >/dev/null; then wget -O "$ARCHIVE.part" "$URL"; else curl -fL -o "$ARCHIVE.part" "$URL"; fi
    mv "$ARCHIVE.part" "$ARCHIVE"
fi

actual=$(sha256sum "$ARCHIVE" | cut -d' ' -f1)
expected=${METAHEAC_DATA_SHA256:-$(awk -v f="$ARCHIVE" '$2 == f {print $1}' checksums.sha256 2>/dev/null || true)}
if [ -z "$expected" ]; then
    if [ "${1:-}" != "--trust" ]; then
        echo "no recorded checksum for $ARCHIVE; its SHA-256 is $actual" >&2
        echo "verify it against a trusted source, then run: bash $0 --trust" >&2
        exit 3
    fi
    echo "$actual  $ARCHIVE" >> checksums.sha256
    expected=$actual
fi
if [ "$actual" != "$expected" ]; then
    echo "checksum mismatch for $ARCHIVE: expected $expected, got $actual (delete it to download again)" >&2
    exit 4
fi

rm -rf unpacked && mkdir unpacked
case "$ARCHIVE" in
    *.zip) "$PYTHON" -m zipfile -e "$ARCHIVE" unpacked/ ;;
    *.rar) if command -v unrar >/dev/null; then unrar e -inul "$ARCHIVE" unpacked/
           elif command -v 7z >/dev/null; then 7z e -bd -ounpacked "$ARCHIVE" >/dev/null
           elif command -v bsdtar >/dev/null; then bsdtar -xf "$ARCHIVE" -C unpacked
           else echo "unpacking $ARCHIVE needs unrar, 7z or bsdtar (e.g. apt-get install libarchive-tools)" >&2; exit 2; fi ;;
    *) echo "unknown archive type: $ARCHIVE" >&2; exit 2 ;;
esac

mkdir -p train_data test_hot_data test_cold_data
place() {  # place <file name> <folder>: find the file anywhere in the unpacked tree
    found=$(find unpacked -name "$1" -type f | head -n 1)
    [ -n "$found" ] || { echo "$1 is not in $ARCHIVE" >&2; exit 5; }
    mv "$found" "$2/"
}
place train_stage1.pkl train_data
place test_hot_stage1.pkl test_hot_data
place test_hot_stage2.pkl test_hot_data
place test_cold_stage1.pkl test_cold_data
place test_cold_stage2.pkl test_cold_data
rm -rf unpacked
"$PYTHON" preprocess.py --check .
echo "data ready: $(pwd)/{train_data,test_hot_data,test_cold_data}"

#!/usr/bin/env bash
# Full Tencent Look-alike data for MetaHeac (models/multitask/metaheac/config_bigdata.yaml).
#
#   bash datasets/Lookalike/run.sh                 download PaddleRec's preprocessed archive, verify, unpack
#   bash datasets/Lookalike/run.sh --archive FILE  the same with an archive you already downloaded
#   bash datasets/Lookalike/run.sh --raw DIR [..]  build the files from the raw Tencent Ad 2018 files in DIR
#                                                  (options after DIR: see python preprocess.py --help)
#   --replace                                      replace an earlier run's output (else refused, exit status 2)
#
# Result (next to this script): train_data/, test_hot_data/, test_cold_data/, each with a
# manifest.json (its files, bytes, rows and the id_space fingerprint shared by the three), and for
# --raw max_idxs.json ({"max_idxs": ..., "id_space": ...}). A non-empty result folder or an
# existing max_idxs.json is refused unless --replace; a run never leaves half its output, nor a
# mix of two runs, under the final names.
#
# The published archive holds pandas pickles, and unpickling can run arbitrary code: it is only
# unpacked when its SHA-256 matches the one in checksums.sha256 (or $METAHEAC_DATA_SHA256). We
# could not download the archive from here to record its checksum, so on the first download the
# script prints the archive's SHA-256 and stops; check it against a source you trust, then run
#   bash run.sh --trust     (records it in checksums.sha256 and unpacks).
#
# Environment: PYTHON (default: the repository's .venv/bin/python, else python3).
set -euo pipefail
die() { echo "run.sh: error: $*" >&2; exit 2; }  # a user error: exit status 2, as the tools
absolute() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }

# Paths given by the user are relative to where they ran the script: resolved before the cd.
RAW="" ARCHIVE_PATH="" TRUST=0 REPLACE=() EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --raw) [ $# -ge 2 ] && [ -d "$2" ] || die "--raw needs an existing folder"
               RAW=$(absolute "$2"); shift 2 ;;
        --archive) [ $# -ge 2 ] && [ -f "$2" ] || die "--archive needs an existing file"
                   ARCHIVE_PATH=$(absolute "$2"); shift 2 ;;
        --trust) TRUST=1; shift ;;
        --replace) REPLACE=(--replace); shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) [ -n "$RAW" ] || die "unknown argument '$1' (options for preprocess.py go after --raw DIR)"
           EXTRA+=("$1"); shift ;;
    esac
done
[ -z "$RAW" ] || [ -z "$ARCHIVE_PATH" ] || die "--raw and --archive exclude each other"

cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
    if [ -x ../../.venv/bin/python ]; then PYTHON=../../.venv/bin/python; else PYTHON=python3; fi
fi

if [ -n "$RAW" ]; then
    exec "$PYTHON" preprocess.py --raw "$RAW" --out . ${REPLACE[@]+"${REPLACE[@]}"} ${EXTRA[@]+"${EXTRA[@]}"}
fi

# Refused before anything is downloaded or unpacked (preprocess.py --install checks again).
if [ ${#REPLACE[@]} -eq 0 ]; then
    for d in train_data test_hot_data test_cold_data; do
        if [ -d "$d" ] && [ -n "$(find "$d" -mindepth 1 -maxdepth 1 ! -name '.*' -print -quit)" ]; then
            die "$(pwd)/$d already holds files; choose another folder, or --replace to replace them"
        fi
    done
    [ ! -e max_idxs.json ] || die "$(pwd)/max_idxs.json exists (an earlier run's output); --replace to replace that run's output"
fi

URL=${METAHEAC_DATA_URL:-https://paddlerec.bj.bcebos.com/datasets/lookalike/Lookalike_data.rar}
ARCHIVE=$(basename "$URL")
if [ -n "$ARCHIVE_PATH" ]; then
    ARCHIVE=$(basename "$ARCHIVE_PATH")
    [ "$ARCHIVE_PATH" = "$(pwd)/$ARCHIVE" ] || cp "$ARCHIVE_PATH" "$ARCHIVE"
fi
if [ ! -f "$ARCHIVE" ]; then
    if command -v wget >/dev/null; then wget -O "$ARCHIVE.part" "$URL"; else curl -fL -o "$ARCHIVE.part" "$URL"; fi
    mv "$ARCHIVE.part" "$ARCHIVE"
fi

actual=$(sha256sum "$ARCHIVE" | cut -d' ' -f1)
expected=${METAHEAC_DATA_SHA256:-$(awk -v f="$ARCHIVE" '$2 == f {print $1}' checksums.sha256 2>/dev/null || true)}
if [ -z "$expected" ]; then
    if [ "$TRUST" != 1 ]; then
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
trap 'rm -rf unpacked' EXIT
case "$ARCHIVE" in
    *.zip) "$PYTHON" -m zipfile -e "$ARCHIVE" unpacked/ ;;
    *.rar) if command -v unrar >/dev/null; then unrar e -inul "$ARCHIVE" unpacked/
           elif command -v 7z >/dev/null; then 7z e -bd -ounpacked "$ARCHIVE" >/dev/null
           elif command -v bsdtar >/dev/null; then bsdtar -xf "$ARCHIVE" -C unpacked
           else die "unpacking $ARCHIVE needs unrar, 7z or bsdtar (e.g. apt-get install libarchive-tools)"; fi ;;
    *) die "unknown archive type: $ARCHIVE" ;;
esac

# The five pickles into train_data/, test_hot_data/, test_cold_data/, each with its manifest.
"$PYTHON" preprocess.py --install unpacked --out . ${REPLACE[@]+"${REPLACE[@]}"}
"$PYTHON" preprocess.py --check .
echo "data ready: $(pwd)/{train_data,test_hot_data,test_cold_data}"

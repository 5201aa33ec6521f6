# Shared by the datasets/<name>/run.sh scripts (sourced after HERE and USAGE_LINES are set):
#   die MESSAGE          print "run.sh: error: MESSAGE" and exit 2 (a user error, as the tools)
#   fail MESSAGE         the same with exit status 1 (the network or the machine)
#   usage                print the script's header comment (lines 2..USAGE_LINES)
#   parse_args "$@"      --raw DIR, --out DIR (default HERE), -h/--help, and anything after -- in EXTRA
#                        --replace: REPLACE_ARGS=(--replace), for run.sh to pass on to preprocess.py
#   PY                   the interpreter: $PYTHON, else <repo>/.venv/bin/python, else python3
#   sha256_of FILE       the file's SHA-256 (sha256sum or shasum)
REPO="$(cd "$HERE/../.." && pwd)"
RAW=""
OUT="$HERE"
EXTRA=()
REPLACE_ARGS=()

die() { echo "run.sh: error: $*" >&2; exit 2; }
fail() { echo "run.sh: error: $*" >&2; exit 1; }
usage() { sed -n "2,${USAGE_LINES}p" "$0" | sed 's/^# \{0,1\}//'; }

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --raw) [ $# -ge 2 ] || die "--raw needs a folder"; RAW="$2"; shift 2 ;;
      --raw=*) RAW="${1#--raw=}"; shift ;;
      --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT="$2"; shift 2 ;;
      --out=*) OUT="${1#--out=}"; shift ;;
      --replace) REPLACE_ARGS=(--replace); shift ;;
      -h|--help) usage; exit 0 ;;
      --) shift; EXTRA+=("$@"); break ;;
      *) die "unknown argument '$1' (options for preprocess.py go after --)" ;;
    esac
  done
}

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"
else PY=python3; fi

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
source "$(dirname "${BASH_SOURCE[0]}")/scripts/env.sh"
python -m pytest tests -q "$@"

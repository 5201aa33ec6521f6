#!/usr/bin/env bash
# Set up (if needed) and train + evaluate every model on its shipped sample data; prints a table.
source "$(dirname "${BASH_SOURCE[0]}")/scripts/env.sh"
python tools/demo.py "$@"

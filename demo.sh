#!/usr/bin/env bash
# Set up (idempotent) and run the embedded CPU demo: traditional run, disaggregated run, comparison.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/python -m demo "$@"

#!/usr/bin/env bash
# Set up (idempotent) and run the demo: CPU traditional and disaggregated runs, their comparison, and the
# committed 2 x H200 comparison rendered into results/demo/h200x2/ (`./demo.sh --h200-only`: that alone).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/python -m demo "$@"

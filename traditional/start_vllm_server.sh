#!/usr/bin/env bash
# Start one vLLM instance (the single-instance baseline). All flags: --help. Ctrl-C stops it, or from
# another shell: python -m traditional stop [RUN_DIR] (default: the last one started).
#   traditional/start_vllm_server.sh --gpu 0 --port 8000 --model llama-3.1-8b -- --max-num-seqs 256
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PY" -m traditional "$@"

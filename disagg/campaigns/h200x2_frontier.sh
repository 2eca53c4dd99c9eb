#!/usr/bin/env bash
# One device call of the frontier campaign on 2 x H200 (vLLM 0.23.0 bundle staged in /tmp/stage):
# installs the bundle once, runs `python -m disagg.campaigns.frontier "$@"` within BUDGET_S seconds,
# and packs the results and launcher logs into $OUT (when set). Read-only on the GPUs.
#   disagg/campaigns/h200x2_frontier.sh --setups replicas --shapes prefill-heavy,decode-heavy
set -uo pipefail
cd "$(dirname "$0")/../.."
[ -f /tmp/site/vllm/__init__.py ] || bash /tmp/stage/install_bundle.sh || exit 3
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
# shellcheck disable=SC1091
source /tmp/stage/env.sh
for d in /tmp/testbed-runs/*/; do [ -d "$d" ] && python3 -m disagg stop "$d" >/dev/null 2>&1; done  # leftovers
RES=${RES:-results/h200x2/frontier}
mkdir -p "$RES"
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.sm,clocks.max.sm,persistence_mode \
    --format=csv > "$RES/gpus-$(date +%H%M%S).csv"
timeout $(( ${BUDGET_S:-540} + 40 )) python3 -m disagg.campaigns.frontier --results "$RES" --budget-s "${BUDGET_S:-540}" "$@"
if [ -n "${OUT:-}" ]; then
  tar -czf "$OUT/results.tgz" "$RES"
  (cd /tmp/testbed-runs 2>/dev/null && for f in */*.log; do tail -n 300 "$f" > "$f.tail"; done
   tar -czf "$OUT/logs.tgz" --exclude='*.log' --exclude='kv' . 2>/dev/null)
fi

#!/usr/bin/env bash
# One device call of the frontier campaign on a 2 x H200 host: installs the staged vLLM bundle once,
# runs `python -m disagg.campaigns.frontier "$@"` within BUDGET_S seconds, archives this call's complete
# runs (result.json.xz) and packs only what this call wrote, plus launcher log tails, into $OUT (when
# set). Read-only on the GPUs. Points stop at the budget's end; give BUDGET_S <= the call's limit - 50 s so
# that stopping the servers and packing fit (a call killed at its limit brings nothing back).
#   STACK=p2p  (default) vLLM 0.23 + P2P NCCL, bundle staged in /tmp/stage      -> /tmp/site
#   STACK=nixl vLLM 0.26 + NIXL,             bundle staged in /tmp/stage-nixl -> /tmp/site-nixl
#   disagg/campaigns/h200x2_frontier.sh --setups replicas --shapes prefill-heavy,decode-heavy
#   disagg/campaigns/h200x2_frontier.sh --setups single --then --setups replicas --rates 8,16
set -uo pipefail
cd "$(dirname "$0")/../.."
case "${STACK:-p2p}" in  # STAGE_DIR / SITE_DIR override the paths (tests)
  p2p) export STAGE=${STAGE_DIR:-/tmp/stage} SITE=${SITE_DIR:-/tmp/site} ;;
  nixl) export STAGE=${STAGE_DIR:-/tmp/stage-nixl} SITE=${SITE_DIR:-/tmp/site-nixl} ;;
  *) echo "STACK must be p2p or nixl"; exit 2 ;;
esac
# shellcheck source=use_bundle.sh
source disagg/campaigns/use_bundle.sh
# shellcheck source=pack_out.sh
source disagg/campaigns/pack_out.sh
RUNS=${RUNS_DIR:-/tmp/testbed-runs}  # the launchers' run dirs: stopped, launched into, log tails packed
case " $* " in  # leftovers of an earlier call, unless this campaign reuses them (--keep-up)
  *" --keep-up "*) ;;
  *) for d in "$RUNS"/*/; do [ -d "$d" ] && python3 -m disagg stop "$d" >/dev/null 2>&1; done ;;
esac
RES=${RES:-results/h200x2/frontier}
mkdir -p "$RES"
START=$(mktemp) && touch "$START"
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.sm,clocks.max.sm,persistence_mode \
    --format=csv > "$RES/gpus-$(date +%H%M%S).csv"
# Campaigns separated by `--then` run one after another within the one budget (e.g. launch variants:
# --launch-args '--kv-block-size 32' --then --launch-args '--kv-block-size 64').
END=$(( $(date +%s) + ${BUDGET_S:-540} ))
campaign() {
  local left=$(( END - $(date +%s) ))
  if [ "$left" -lt 60 ]; then echo "skipped (${left}s of budget left): $*"; return; fi
  timeout $(( left + 15 )) python3 -m disagg.campaigns.frontier --results "$RES" --budget-s "$left" \
      --launch-dir "$RUNS" "$@"  # a campaign's own --launch-dir (under RUNS_DIR) comes later and wins
}
args=()
for a in "$@"; do
  if [ "$a" = "--then" ]; then campaign "${args[@]}"; args=(); else args+=("$a"); fi
done
campaign "${args[@]}"
pack_new_results "$RES" "$START"
pack_log_tails "$RUNS"

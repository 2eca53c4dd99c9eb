#!/usr/bin/env bash
# One device call: the energy attribution validation on one H200 (disagg/campaigns/README.md, "Energy
# attribution validation"), vLLM 0.23 (the bundle staged in /tmp/stage, installed once into /tmp/site).
# One 8B instance on GPU 0; isolated prefill (max_tokens 1, two loads and a second prompt length),
# isolated decode (closed loop at two batch sizes) and mixed runs at two loads, sampled every 20 ms with
# the energy counter read at every step; each run attributes itself. Runs stop starting once BUDGET_S is
# spent; the complete ones are archived and packed into $OUT/results.tgz (launcher log tails:
# $OUT/logs.tgz). Read-only on the GPU: nothing here sets clocks or limits.
#   BUDGET_S=480 bash disagg/campaigns/h200_attribution.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
STAGE=${STAGE_DIR:-/tmp/stage} SITE=${SITE_DIR:-/tmp/site}
# shellcheck source=use_bundle.sh
source disagg/campaigns/use_bundle.sh
# shellcheck source=pack_out.sh
source disagg/campaigns/pack_out.sh
RES=${RES:-results/h200/attribution}
RUN=${RUN_DIR:-/tmp/testbed-runs/attr}
END=$(( $(date +%s) + ${BUDGET_S:-480} ))
mkdir -p "$RES"
START=$(mktemp) && touch "$START"
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.sm,clocks.max.sm,persistence_mode \
    --format=csv > "$RES/gpus-$(date +%H%M%S).csv"
T0=$(date +%s)
python3 -m traditional --gpu 0 --port 8100 --model llama-3.1-8b --detach --run-dir "$RUN" --timeout 200
echo "launch: exit $? after $(( $(date +%s) - T0 )) s"
A=(--mode traditional --endpoint http://127.0.0.1:8100 --gpu-ids 0 --monitor-interval 0.02
   --counter-every 0.1 --idle-seconds 10 --output-dir "$RES")
point() {  # EST_S: the run's expected seconds; skipped when the budget has less left
  local est=$1; shift
  local left=$(( END - $(date +%s) ))
  if [ "$left" -lt "$est" ]; then echo "skipped (${left}s left, needs ~${est}s): $*"; return; fi
  timeout "$left" python3 run_experiment.py "${A[@]}" "$@" 2>&1 | tail -n 4
}
if [ "${RUNS:-all}" = "decode-ctx" ]; then  # decode references at the mixed runs' context and batch:
  # one fixed 2048-token prompt (prefix-cached after the first request), 256 outputs, closed loop at the
  # mixed runs' mean decode batch (~6.7 at 4 req/s, ~19 at 8 req/s)
  point 40 --workload fixed --input-len 2048 --output-len 256 --arrival closed --concurrency 7 \
      --num-requests 56 --seed 2208 --tag decode-ctx2048-c7
  point 45 --workload fixed --input-len 2048 --output-len 256 --arrival closed --concurrency 19 \
      --num-requests 152 --seed 2209 --tag decode-ctx2048-c19
  END=0
fi
point 55 --input-len 2048 --output-len 1 --rate 4 --num-requests 160 --seed 2201 --tag prefill-only-rate4
point 45 --input-len 2048 --output-len 1 --rate 8 --num-requests 240 --seed 2202 --tag prefill-only-rate8
point 52 --input-len 16 --output-len 1024 --arrival closed --concurrency 8 --num-requests 48 --seed 2203 \
    --tag decode-only-c8
point 50 --input-len 16 --output-len 1024 --arrival closed --concurrency 16 --num-requests 80 --seed 2204 \
    --tag decode-only-c16
point 57 --input-len 2048 --output-len 256 --rate 4 --num-requests 160 --seed 2205 --tag mixed-rate4
point 47 --input-len 2048 --output-len 256 --rate 8 --num-requests 240 --seed 2206 --tag mixed-rate8
point 40 --input-len 512 --output-len 1 --rate 16 --num-requests 400 --seed 2207 --tag prefill-only-512-rate16
python3 -m traditional stop "$RUN" > /dev/null 2>&1
python3 -m experiments.attribution $(find "$RES" -name 'result.json' -newer "$START" -printf '%h\n' | sort) \
    > "$RES/attribution-$(date +%H%M%S).txt" 2>&1
pack_new_results "$RES" "$START"
pack_log_tails "$RUN"

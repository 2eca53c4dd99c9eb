#!/usr/bin/env bash
# GPU campaign on one 2 x H200 host (vLLM 0.23.0 bundle installed into /tmp/site, see
# reference/launch_recipe.md). Every step uses the project's own launcher, proxy and run_experiment.py.
#
#   disagg/campaigns/h200x2.sh sendtype RESULTS_DIR   # P2P NCCL send_type / channels exploration
#   disagg/campaigns/h200x2.sh main RESULTS_DIR       # 1P1D vs single instance at 4 and 10 req/s
#
# Env: MODEL, IN_LEN, OUT_LEN, PY, ENV_SH (for a CPU dry run: MODEL=tiny IN_LEN=200 OUT_LEN=16), BUDGET_S (stop starting new steps when less than ~3 min would remain), N_MAIN, N_SWEEP,
# P2P_SEND_TYPE / P2P_CHANNELS (for main; default: the launcher's defaults), OUT (copies a tarball there).
# Read-only on the GPUs: nothing here changes clocks, power limits or persistence.
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:?usage: h200x2.sh sendtype|main RESULTS_DIR}
RES=${2:-results/h200x2}
BUDGET_S=${BUDGET_S:-560}
N_MAIN=${N_MAIN:-200}
N_SWEEP=${N_SWEEP:-80}
RUNS=/tmp/testbed-runs
mkdir -p "$RES" "$RUNS"
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
ENV_SH=${ENV_SH:-/tmp/stage/env.sh}
# shellcheck disable=SC1090
[ -f "$ENV_SH" ] && source "$ENV_SH"
# shellcheck source=pack_out.sh
source disagg/campaigns/pack_out.sh
PY=${PY:-python3}
MODEL=${MODEL:-llama-3.1-8b}
EXP=(--input-len "${IN_LEN:-2048}" --output-len "${OUT_LEN:-256}" --warmup 4 --idle-seconds 5 --slo ttft=1000,tpot=50
     --monitor-interval 0.1 --request-timeout 300)
P_URL=http://127.0.0.1:8100 D_URL=http://127.0.0.1:8200

log() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*"; }
left() { echo $((BUDGET_S - SECONDS)); }
pack() {  # what comes back: results, launcher logs (tails), the campaign log
  [ -n "${OUT:-}" ] || return 0
  tar -czf "$OUT/results.tgz" "$RES" 2>/dev/null
  pack_log_tails "$RUNS"
}

start_pair() {  # NAME [launcher args...]
  local name=$1; shift
  log "start pair $name: $*"
  $PY -m disagg --detach --model "$MODEL" --run-dir "$RUNS/$name" --timeout 420 "$@" \
      || { log "pair $name failed to start"; tail -n 30 "$RUNS/$name"/*.log; return 1; }
}
stop_pair() { $PY -m disagg stop "$RUNS/$1" >/dev/null; sleep 3; }

experiment() {  # MODE RATE N TAG [extra run_experiment args...]
  local mode=$1 rate=$2 n=$3 tag=$4; shift 4
  log "experiment $mode rate=$rate n=$n tag=$tag"
  $PY run_experiment.py --mode "$mode" --endpoint http://127.0.0.1:8000 --rate "$rate" --num-requests "$n" \
      --output-dir "$RES" --tag "$tag" "${EXP[@]}" "$@" 2>&1 | grep -v '^\s*[0-9]*/[0-9]* done' | tail -n 4
  pack
}

nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.sm,clocks.max.sm,persistence_mode \
    --format=csv | tee "$RUNS/gpus.csv"
$PY -c "from experiments.model_dir import resolve_model as r; print(r('$MODEL'))"

case "$MODE" in
sendtype)
  # One pair per P2P NCCL setting, 4 req/s; the proxy's stage timings show where the prefill leg goes.
  for cfg in "PUT_ASYNC 16" "GET 16" "PUT 16" "PUT_ASYNC 8"; do
    read -r st ch <<<"$cfg"
    [ "$(left)" -gt 150 ] || { log "budget: skipping $cfg"; continue; }
    extra=()
    [ "$st" = GET ] && extra=(--prefill-buffer-size 3e10 --prefill-gpu-memory-utilization 0.65)
    if start_pair "$st-$ch" --send-type "$st" --nccl-num-channels "$ch" "${extra[@]}"; then
      experiment disagg 4 "$N_SWEEP" "sendtype-$st-ch$ch" --server-metrics "$P_URL,$D_URL"
    fi
    stop_pair "$st-$ch"
  done
  ;;
main)
  pair_args=()
  [ -n "${P2P_SEND_TYPE:-}" ] && pair_args+=(--send-type "$P2P_SEND_TYPE")
  [ -n "${P2P_CHANNELS:-}" ] && pair_args+=(--nccl-num-channels "$P2P_CHANNELS")
  if start_pair main "${pair_args[@]}"; then
    # Monitor check during real load: counter vs integrated instant power, sample rate, read latency.
    $PY -m bench.validate_gpu --backend nvml --gpu-ids 0,1 --interval 0.1 --seconds 40 \
        --json "$RES/monitor_validation.json" > "$RES/monitor_validation.txt" 2>&1 &
    experiment disagg 4 "$N_MAIN" rate4 --server-metrics "$P_URL,$D_URL"
    wait
    [ "$(left)" -gt 200 ] && experiment disagg 10 "$N_MAIN" rate10 --server-metrics "$P_URL,$D_URL"
  fi
  stop_pair main
  if [ "$(left)" -gt 200 ]; then
    log "start single instance on GPU 0"
    if $PY -m traditional --detach --gpu 0 --model "$MODEL" --port 8000 --run-dir "$RUNS/traditional" \
        --timeout 420; then
      experiment traditional 4 "$N_MAIN" rate4 --server-metrics http://127.0.0.1:8000
      [ "$(left)" -gt 60 ] && experiment traditional 10 "$N_MAIN" rate10 --server-metrics http://127.0.0.1:8000
    fi
    $PY -m traditional stop "$RUNS/traditional" >/dev/null
  fi
  $PY -m bench.bench_monitor --backend nvml --gpu-ids 0,1 --seconds 5 > "$RES/bench_monitor_nvml.txt" 2>&1
  cat "$RES/monitor_validation.txt" "$RES/bench_monitor_nvml.txt" 2>/dev/null | tail -n 40
  ;;
*) echo "unknown mode $MODE"; exit 2 ;;
esac
pack
log "done"

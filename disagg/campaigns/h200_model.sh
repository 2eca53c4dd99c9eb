#!/usr/bin/env bash
# One model's single-instance profile and validation sweep on one H200 (issue 21, items 2 and 3), in one
# device call or spread over several back to back (the instance stays up between calls; a later call
# resumes): launches one instance on GPU 0 at max_model_len 17408 (as h200_profile.sh), profiles it once
# (profile_instance.sh, into RES/profile, when RES has no profile yet), predicts every point still to run
# from that profile (`python -m planner simulate` with the campaign's own requests and seeds, into
# RES/predicted/, before any point runs: the predictions precede the measurements), then sweeps
# prefill-heavy (2048 -> 256) at PREFILL_RATES and decode-heavy (512 -> 1024) at DECODE_RATES, each
# point's arrivals lasting >= MIN_ARRIVAL_S (steady state). Through h200x2_frontier.sh: bundle install,
# budget, archives, $OUT packing. Read-only on the GPU.
#   disagg/campaigns/h200_model.sh qwen3-30b-a3b 6,12,18,24 3,5,7,9
# The instance's launcher dir is RUNS_DIR/MODEL (/tmp/testbed-runs/MODEL); another model's instance left
# up there by an earlier call is stopped first.
# Env: RES (results/h200/models/MODEL; seeded from COMMITTED, by default that folder, when it has no
# profile yet), BUDGET_S (540), MIN_ARRIVAL_S (60), PREFILL_MIN_ARRIVAL_S and
# DECODE_MIN_ARRIVAL_S (each shape's, default MIN_ARRIVAL_S: steady state wants >= 3 mean E2E latencies,
# and decode-heavy's are the longer), NUM_REQUESTS (20: the floor under rate x the arrival time),
# PROFILE_S (330), LAUNCH_TIMEOUT (420), RUNS_DIR.
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = --on-start ]; then  # the campaign's --on-start hook: profile once, then predict the points
  ENDPOINT=$2
  PROFILE=$RES/profile/h200-$MODEL.json
  if [ ! -f "$PROFILE" ]; then
    bash disagg/campaigns/profile_instance.sh "$MODEL" "$ENDPOINT" "$RES/profile" || exit $?
  fi
  mkdir -p "$RES/predicted"
  for spec in "prefill-heavy $PREFILL_RATES ${PREFILL_MIN_ARRIVAL_S:-$MIN_ARRIVAL_S}" \
              "decode-heavy $DECODE_RATES ${DECODE_MIN_ARRIVAL_S:-$MIN_ARRIVAL_S}"; do
    set -- $spec
    python3 -m disagg.campaigns.frontier --setups single --shapes "$1" --rates "$2" --results "$RES" \
        --num-requests "$NUM_REQUESTS" --min-arrival-s "$3" --print-points
  done | while read -r setup shape rate n seed in_len out_len; do
    pred=$RES/predicted/$shape-$setup-rate$rate.json
    [ -f "$pred" ] && continue
    python3 -m planner simulate --profile "$PROFILE" --setup "$setup" --rates "$rate" --num-requests "$n" \
        --seed "$seed" --input-len "$in_len" --output-len "$out_len" --json "$pred" > /dev/null || exit 5
    echo "predicted before its run: $pred ($(date -u +%FT%TZ))"
  done
  exit $?
fi
MODEL=${1:?usage: h200_model.sh MODEL PREFILL_RATES DECODE_RATES} PREFILL_RATES=${2:?} DECODE_RATES=${3:?}
export MODEL PREFILL_RATES DECODE_RATES RES=${RES:-results/h200/models/$1}
export MIN_ARRIVAL_S=${MIN_ARRIVAL_S:-60} NUM_REQUESTS=${NUM_REQUESTS:-20}
export PREFILL_MIN_ARRIVAL_S=${PREFILL_MIN_ARRIVAL_S:-$MIN_ARRIVAL_S} DECODE_MIN_ARRIVAL_S=${DECODE_MIN_ARRIVAL_S:-$MIN_ARRIVAL_S}
# A later device session starts from what an earlier one brought back and we committed: its profile (or the
# points a cut profile kept), its predictions and its finished points go into an empty RES, mtimes kept,
# so nothing is redone and this call's $OUT packs only what it writes.
COMMITTED=${COMMITTED:-results/h200/models/$MODEL}
if [ "$COMMITTED" != "$RES" ] && [ ! -d "$RES/profile" ] && [ -d "$COMMITTED/profile" ]; then
  mkdir -p "$RES"
  for d in profile predicted prefill-heavy decode-heavy; do
    [ -d "$COMMITTED/$d" ] && cp -rp "$COMMITTED/$d" "$RES/"
  done
  echo "resumed from $COMMITTED: $(find "$RES" -name 'result.json*' | wc -l) finished points, its profile and predictions"
fi
RUNS=${RUNS_DIR:-/tmp/testbed-runs}  # h200x2_frontier.sh has the same default
for d in "$RUNS"/*/*/; do  # another model's instance left up by an earlier call holds the GPU: stop it
  [ -f "$d/launch.json" ] && [ "$d" != "$RUNS/$MODEL/single/" ] && python3 -m traditional stop "$d" >/dev/null 2>&1
done
common=(--setups single --model "$MODEL" --gpu-ids 0 --keep-up --launch-args '--max-model-len 17408'
        --launch-dir "$RUNS/$MODEL"
        --launch-timeout "${LAUNCH_TIMEOUT:-420}" --num-requests "$NUM_REQUESTS"
        --on-start "bash disagg/campaigns/h200_model.sh --on-start {endpoint}")
exec bash disagg/campaigns/h200x2_frontier.sh "${common[@]}" --shapes prefill-heavy --rates "$PREFILL_RATES" \
    --min-arrival-s "$PREFILL_MIN_ARRIVAL_S" --then "${common[@]}" --shapes decode-heavy --rates "$DECODE_RATES" \
    --min-arrival-s "$DECODE_MIN_ARRIVAL_S"

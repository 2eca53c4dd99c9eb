#!/usr/bin/env bash
# The planner profile of one running instance on GPU 0, at the sizes every H200 profile uses (prefill 256
# to 16,384 tokens, each after one unmeasured warm-up prompt; decode batch 1 to 256 over 512-2048-token
# contexts; idle, prefill and decode power), within PROFILE_S seconds: writes DEST/h200-MODEL.json, its
# log and the GPU's state (nvidia-smi: clocks, power limit, driver). Read-only on the GPU. A run cut short
# (PROFILE_S, a device call's limit) leaves its points in DEST/h200-MODEL.points.json: the next call
# resumes them (--resume: only the points still missing; the log is appended to).
#   disagg/campaigns/profile_instance.sh MODEL ENDPOINT DEST [more `python -m planner profile` flags]
# Used by h200_profile.sh (launch, profile, stop) and h200_model.sh (profile, predict, sweep).
set -uo pipefail
MODEL=${1:?usage: profile_instance.sh MODEL ENDPOINT DEST [flags]} ENDPOINT=${2:?} DEST=${3:?}
shift 3
mkdir -p "$DEST"
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.sm,clocks.max.sm,memory.total \
    --format=csv > "$DEST/h200-$MODEL.gpu.csv"
resume=() tee=(tee)
[ -f "$DEST/h200-$MODEL.points.json" ] && resume=(--resume) tee=(tee -a)
timeout "${PROFILE_S:-330}" python3 -m planner profile --endpoint "$ENDPOINT" \
    --output "$DEST/h200-$MODEL.json" --decode-batches 1,4,16,64,128,256 --decode-contexts 512,1024,2048 \
    --decode-tokens 128 --prefill-repeats 2 "${resume[@]}" "$@" 2>&1 | "${tee[@]}" "$DEST/h200-$MODEL.profile.log"
exit "${PIPESTATUS[0]}"

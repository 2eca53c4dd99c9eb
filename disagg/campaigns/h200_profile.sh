#!/usr/bin/env bash
# One device call: a planner profile of one model shape on one H200, vLLM 0.23 (the bundle staged in
# /tmp/stage, installed once into /tmp/site). Launches one instance on GPU 0 at MAX_MODEL_LEN (17408:
# 16k prefills fit, as the 8B profile's second run), profiles it (profile_instance.sh: the 8B profile's
# sizes, within PROFILE_S seconds), stops it, and packs the profile, its log, the GPU's state and the
# launcher log tails into $OUT (else results/profiles). Read-only on the GPU: nothing here sets clocks or limits.
#   disagg/campaigns/h200_profile.sh qwen2.5-32b [more `python -m planner profile` flags]
# Env: MAX_MODEL_LEN (17408), LAUNCH_TIMEOUT (420 s), PROFILE_S (330 s), LAUNCH_ARGS (extra launcher
# flags, e.g. '--kv-block-size 32'), STAGE_DIR / SITE_DIR / RUN_DIR (the bundle's and the launcher's
# paths; tests).
set -uo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:?usage: h200_profile.sh MODEL [python -m planner profile flags]}
shift
STAGE=${STAGE_DIR:-/tmp/stage} SITE=${SITE_DIR:-/tmp/site}
# shellcheck source=use_bundle.sh
source disagg/campaigns/use_bundle.sh
DEST=${OUT:-results/profiles}
RUN=${RUN_DIR:-/tmp/testbed-runs/profile-$MODEL}
mkdir -p "$DEST"
T0=$(date +%s)
# shellcheck disable=SC2086 # LAUNCH_ARGS is a list of flags
python3 -m traditional --gpu 0 --port 8100 --model "$MODEL" --max-model-len "${MAX_MODEL_LEN:-17408}" \
    --detach --run-dir "$RUN" --timeout "${LAUNCH_TIMEOUT:-420}" ${LAUNCH_ARGS:-}
rc=$?
echo "launch of $MODEL: exit $rc after $(( $(date +%s) - T0 )) s" | tee "$DEST/h200-$MODEL.launch.txt"
if [ "$rc" -eq 0 ]; then
  bash disagg/campaigns/profile_instance.sh "$MODEL" http://127.0.0.1:8100 "$DEST" "$@"
  rc=$?
fi
python3 -m traditional stop "$RUN" > /dev/null 2>&1
for f in "$RUN"/*.log; do [ -f "$f" ] && tail -n 300 "$f" > "$DEST/h200-$MODEL.$(basename "$f").tail"; done
exit "$rc"

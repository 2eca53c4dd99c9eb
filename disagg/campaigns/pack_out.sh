# Sourced by the device scripts: what a call brings back in $OUT (set by the device; unset, nothing is packed).
# pack_new_results RES START: this call's complete runs under RES archived (result.json.xz, ~5x smaller; an
# incomplete run stays as it is), then every file under RES newer than the file START into results.tgz.
pack_new_results() {
  [ -n "${OUT:-}" ] || return 0
  find "$1" -name result.json -newer "$2" -printf '%h\n' | xargs -r python3 -m experiments.archive >/dev/null
  find "$1" -type f -newer "$2" -print0 | tar -czf "$OUT/results.tgz" --null -T -
}
# pack_log_tails DIR: the last 300 lines of each launcher log under DIR, beside DIR's other files (no logs,
# KV folders or proxy stage traces), into logs.tgz. No DIR, no logs.tgz: the tar never runs anywhere else.
pack_log_tails() {
  [ -n "${OUT:-}" ] && [ -d "$1" ] || return 0
  (cd "$1" && find . -type f -name '*.log' | while read -r f; do tail -n 300 "$f" > "$f.tail"; done
   tar -czf "$OUT/logs.tgz" --exclude='*.log' --exclude='kv' --exclude='proxy_stages.jsonl' . 2>/dev/null)
}

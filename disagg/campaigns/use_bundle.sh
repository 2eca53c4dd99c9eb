# Sourced by the device scripts with STAGE (the staged bundle's parts) and SITE (where it installs) set:
# installs the vLLM bundle once, compiles its bytecode (it installs without: vLLM 0.26 was still importing
# 66 s into its first launch on a fresh machine), puts SITE on PYTHONPATH and sources the bundle's env.sh.
# Exits the calling script with 3 when the install fails.
if [ ! -f "$SITE/vllm/__init__.py" ]; then
  STAGE=$STAGE bash "$STAGE/install_bundle.sh" || exit 3
  python3 -m compileall -q -j 0 "$SITE" > /dev/null 2>&1 || true
fi
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
# shellcheck disable=SC1091
source "$STAGE/env.sh"

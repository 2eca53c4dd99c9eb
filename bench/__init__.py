"""Tools beside the packages: benchmarks of each part's speed, the proxy soak, the GPU validation script
and the synthetic sweeps the frontier benchmark and tests share. Each runs as `python -m bench.NAME`
from the repository root; nothing in the packages imports from here."""

"""Frontier analysis speed: 100 runs x 300 records (4 setups x 25 rates, 256 output tokens per request),
from result files on disk to frontier.md and its plots, on one core. Target: < 10 s.

    python -m bench.bench_frontier [--runs 100] [--records 300] [--xz] [--no-plots]

The synthetic sweeps (bench/synthetic_sweeps.py) go through the real schema. --xz archives every
run as result.json.xz first, as the committed campaign runs are.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from analysis.frontier import SloGrid, build_frontier
from analysis.frontier_render import write_frontier
from analysis.runs import find_results, load_runs
from bench.synthetic_sweeps import ONE, PD, REPLICAS, Request, save_sweep, sweep_run
from bench.util import pin_one_core
from experiments.schema import archive_run
from testbed.cli_errors import OneLineErrorParser

# (setup of the golden sweeps, label): the fourth is the replicas with another selection policy.
SETUPS = ((ONE, ONE), (PD, PD), (REPLICAS, REPLICAS), (REPLICAS, "2 replicas, least loaded"))
OUTPUT_TOKENS = 256


def requests(rng: np.random.Generator, load: float, n: int) -> list[Request]:
    """TTFT and TPOT that grow with the load (a share of capacity), one request in 100 failed."""
    ttft = rng.lognormal(np.log(80 + 2000 * load**4), 0.5, n)
    tpot = rng.lognormal(np.log(8 + 30 * load**2), 0.2, n)
    failed = rng.random(n) < 0.01
    return [None if f else (float(a), float(b)) for a, b, f in zip(ttft, tpot, failed, strict=True)]


def make_runs(root: Path, runs: int, records: int) -> None:
    rng = np.random.default_rng(7)
    per_setup = runs // len(SETUPS)
    made = []
    for k, (setup, label) in enumerate(SETUPS):
        for i in range(per_setup):
            rate = 2.0 + i
            run = sweep_run(
                setup,
                rate,
                requests(rng, rate / (per_setup + 2), records),
                600.0 + 20 * rate,
                order=k * per_setup + i,
                output_tokens=OUTPUT_TOKENS,
            )
            assert run.metadata.serving_setup is not None
            run.metadata.serving_setup.label = label
            if label != setup:
                run.metadata.serving_setup.select = "least_loaded"
            made.append(run)
    save_sweep(root, made)


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(prog="python -m bench.bench_frontier", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--xz", action="store_true", help="archive the runs (result.json.xz) before timing")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    print(pin_one_core())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sweeps"
        t0 = time.perf_counter()
        make_runs(root, args.runs, args.records)
        if args.xz:
            for path in find_results(root):
                archive_run(path.parent)
        print(
            f"wrote {args.runs} runs x {args.records} records in {time.perf_counter() - t0:.1f} s (not timed)"
        )
        t_start = time.perf_counter()
        runs = load_runs(find_results(root))
        t_load = time.perf_counter()
        frontier = build_frontier(runs, SloGrid())
        t_frontier = time.perf_counter()
        plots: list[tuple[str, str]] = []
        if not args.no_plots:
            from analysis.frontier_plots import make_frontier_plots

            plots, _ = make_frontier_plots(frontier, Path(tmp) / "out")
        t_plots = time.perf_counter()
        write_frontier(frontier, Path(tmp) / "out", plots)
        t_end = time.perf_counter()
    print(f"load + summaries: {t_load - t_start:6.2f} s ({len(runs)} runs)")
    print(f"frontier:         {t_frontier - t_load:6.2f} s ({len(frontier.setups)} setups, 16 SLO cells)")
    print(f"plots:            {t_plots - t_frontier:6.2f} s ({len(plots)} PNGs)")
    print(f"frontier.md:      {t_end - t_plots:6.2f} s")
    print(f"total:            {t_end - t_start:6.2f} s (target < 10 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

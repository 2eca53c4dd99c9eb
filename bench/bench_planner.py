"""Planner speed: 100,000 simulated requests of one setup (target < 10 s) and a 64-GPU search (< 2 min).

    python -m bench.bench_planner [--requests 100000] [--gpus 64] [--profile illustrative|FILE]

Pinned to one core where the OS allows it. Drawing the workload's lengths through the runner's
generators is timed apart from the simulation (it is paid once per workload and cached).
"""

from __future__ import annotations

import time

from bench.util import pin_one_core
from planner.illustrative import illustrative_profile
from planner.outcome import summarize
from planner.profile_model import load_profile
from planner.search import SearchConfig, search
from planner.setups import parse_setup
from planner.simulate import simulate
from planner.workload import WorkloadSpec, build_workload
from testbed.cli_errors import OneLineErrorParser

SETUPS = (("single", 6.0), ("1P1D", 10.0), ("replicas:8", 60.0), ("5P3D", 80.0))
SLO = {"ttft": 500.0, "tpot": 25.0}


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(prog="python -m bench.bench_planner", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--gpus", type=int, default=64)
    p.add_argument("--profile", default="illustrative")
    args = p.parse_args(argv)
    print(pin_one_core())
    prof = illustrative_profile() if args.profile == "illustrative" else load_profile(args.profile)
    spec = WorkloadSpec(num_requests=args.requests, input_len=2048, output_len=256)
    t0 = time.perf_counter()
    workload = build_workload(spec)
    print(f"workload: {spec.describe()}, {len(workload)} requests drawn in {time.perf_counter() - t0:.2f} s")
    for name, rate in SETUPS:
        arrivals = workload.arrivals("poisson", rate)
        t0 = time.perf_counter()
        run = simulate(prof, parse_setup(name), workload.prompt_tokens, workload.output_tokens, arrivals)
        sim_s = time.perf_counter() - t0
        out = summarize(run, prof.power, SLO)
        print(
            f"simulate {name:<10} at {rate:>5g} req/s: {sim_s:6.2f} s for {len(workload)} requests "
            f"({run.events} events, {run.events / sim_s / 1e3:.0f}k events/s; "
            f"+{time.perf_counter() - t0 - sim_s:.2f} s metrics), {run.duration_s:.0f} s simulated, "
            f"attainment {100 * (out.attainment or 0):.1f}%"
        )
    # The CLI's defaults: max(2000, 300 x GPUs) requests per simulated run. Decode-heavy requests last
    # longer, so more of its runs are too short for their load and run again, repeated (planner/search.py).
    for input_len, output_len in ((2048, 256), (512, 1024)):
        t0 = time.perf_counter()
        search_spec = WorkloadSpec(num_requests=2000, input_len=input_len, output_len=output_len)
        found = search(prof, [args.gpus], search_spec, SearchConfig(SLO), top=3, progress=print)
        total = time.perf_counter() - t0
        best = found[args.gpus][0]
        print(
            f"search over {args.gpus} GPUs, {input_len} -> {output_len} tokens: {total:.1f} s; best "
            f"{best.setup.name} at {best.goodput_per_gpu:.2f} req/s per GPU, "
            f"{best.j_per_request:.1f} J/request"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

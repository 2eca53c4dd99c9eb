"""`python -m planner loop --profile P --measured DIR --output P2`: the profile's serving loop, from runs.

Two things stand between an engine step and the client that a one-instance profile at idle cannot see
(planner/engine.py, `ServingLoopModel`):
- async scheduling: vLLM's engine core composes step k+1 while step k runs (its default since async
  scheduling was turned on by default; `--sync` for a server run with it off), so a request that reaches
  it mid-step joins the step after next (the default since vllm-project/vllm#27614);
- the API server's time per output of a step: the median, over the runs that batched more than 128
  streams, of their output-group period (`planner.measured.output_cost_s`): a step's outputs are
  processed and written one stream after another, in groups of 128.
The cost comes from the runs' chunk times, never from their TTFTs. Everything else in the profile is kept.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from planner.measured import find_measured, load_measured
from planner.profile_model import ProfileError, ServingLoopModel, load_profile


def add_loop_parser(sub: Any) -> None:
    p = sub.add_parser("loop", help="set a profile's serving loop: async scheduling, API-server s per output",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--profile", type=Path, required=True, help="measured profile JSON")
    p.add_argument("--measured", type=Path, required=True, help="folder of measured runs with chunk times")
    p.add_argument("--sync", action="store_true", help="the server ran with async scheduling off")
    p.add_argument("--output", type=Path, required=True, help="profile JSON to write (may be --profile)")


def serving_loop_from(runs: list[Path], async_scheduling: bool, label: str) -> ServingLoopModel:
    """The median time per output over the runs whose steps streamed to more than 128 clients."""
    costs = [c for c in (load_measured(r).output_cost_s for r in runs) if c is not None]
    if not costs:
        raise ProfileError(
            f"no run under {label} streamed to more than 128 clients at once, so no output group can be "
            "timed; give runs at higher load (e.g. results/h200x2/frontier)"
        )
    cost = float(np.median(costs))
    mode = "async" if async_scheduling else "synchronous"
    source = (
        f"{mode} scheduling (vLLM's default since vllm-project/vllm#27614; --sync when off); "
        f"{1e6 * cost:.1f} us per output: median over {len(costs)} runs under {label} of their output "
        f"groups' period / 128 (range {1e6 * min(costs):.1f}-{1e6 * max(costs):.1f} us), by "
        "`python -m planner loop`"
    )
    return ServingLoopModel(async_scheduling, cost, source)


def cmd_loop(args: argparse.Namespace) -> int:
    prof = load_profile(args.profile)
    runs = find_measured(args.measured)
    if not runs:
        raise ProfileError(f"no measured run under {args.measured}; give a folder of run directories")
    new = replace(prof, loop=serving_loop_from(runs, not args.sync, str(args.measured)))
    out = new.save(args.output)
    print(new.describe())
    print(f"profile: {out}")
    return 0

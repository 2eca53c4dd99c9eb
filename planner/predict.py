"""`python -m planner predict`: predictions committed before the hardware that would judge them exists.

For both workload shapes of the 2 x H200 frontier campaign (prefill-heavy 2048 -> 256, decode-heavy
512 -> 1024) and every SLO of a grid: 1P3D, 2P2D, 3P1D and four replicas on 4 GPUs, and the best few
setups on 8, 16 and 64 GPUs (planner/search.py), each with its SLO-sustaining rate, goodput per GPU
and J per request at that rate. Writes predictions.md and predictions.json into --out.

    python -m planner predict --profile results/profiles/h200-8b.json --out results/planner/predictions

Predictions are only worth committing from a measured profile: any other gets a banner saying these
are not predictions (tests run it with the illustrative one into a temporary folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.slo import DEFAULT_SLO_GRID, parse_slo_grid
from planner.profile_model import Profile
from planner.search import (
    MAX_REPEATS,
    RunCache,
    SearchConfig,
    SetupResult,
    search_grid,
    sustained_rate,
    workload_for,
)
from planner.setups import parse_setup
from planner.validate import slo_cells, slo_label
from planner.validate_report import grid_text
from planner.workload import WorkloadSpec
from testbed.cli_errors import arg_type

# The frontier campaign's shapes (results/h200x2/frontier/<shape>): input -> output tokens.
SHAPES: dict[str, tuple[int, int]] = {"prefill-heavy": (2048, 256), "decode-heavy": (512, 1024)}
FIXED_SETUPS = ("1P3D", "2P2D", "3P1D", "replicas:4")
BEST_GPUS = (8, 16, 64)


@dataclass(frozen=True)
class Predicted:
    shape: str
    slo: dict[str, float]
    result: SetupResult
    rank: int | None = None  # place among the best of its GPU count (None: a fixed setup)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "slo": self.slo, "rank": self.rank, **self.result.to_dict()}


@dataclass
class Predictions:
    profile: Profile
    slos: list[dict[str, float]]
    config: SearchConfig
    shapes: dict[str, tuple[int, int]]
    fixed: list[Predicted] = field(default_factory=list)
    best: list[Predicted] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        cfg = dataclasses.asdict(self.config)
        cfg.pop("slo")
        return {
            "kind": "planner-predictions",
            "profile": dataclasses.asdict(self.profile.provenance),
            "profile_description": self.profile.describe(),
            "shapes": {k: {"input_len": i, "output_len": o} for k, (i, o) in self.shapes.items()},
            "slos": self.slos,
            "search": cfg,
            "fixed_setups": [p.to_dict() for p in self.fixed],
            "best": [p.to_dict() for p in self.best],
            "wall_s": self.wall_s,
        }


def predict(
    profile: Profile,
    shapes: dict[str, tuple[int, int]],
    slos: Sequence[dict[str, float]],
    cfg: SearchConfig,
    fixed: Sequence[str] = FIXED_SETUPS,
    best_gpus: Sequence[int] = BEST_GPUS,
    top: int = 3,
    progress: Callable[[str], None] | None = None,
) -> Predictions:
    t0 = time.perf_counter()
    out = Predictions(profile, [dict(s) for s in slos], cfg, dict(shapes))
    setups = [parse_setup(s, "round_robin") for s in fixed]
    limits = profile.engine
    for shape, (n_in, n_out) in shapes.items():
        spec = WorkloadSpec(kind="random", input_len=n_in, output_len=n_out, seed=cfg.seed)
        for setup in setups:
            workload = workload_for(spec, setup.gpus, cfg)
            runs = RunCache(profile, setup, workload, cfg, limits)
            for slo in slos:
                one = dataclasses.replace(cfg, slo=dict(slo))
                out.fixed.append(
                    Predicted(shape, dict(slo), sustained_rate(profile, setup, workload, one, limits, runs))
                )
            if progress:
                progress(f"{shape}: {setup.name} at {len(slos)} SLOs ({runs.simulations} runs)")
        found = search_grid(profile, best_gpus, spec, cfg, list(slos), top, "round_robin", limits, progress)
        for slo, per_gpus in zip(slos, found, strict=True):
            for results in per_gpus.values():
                out.best += [Predicted(shape, dict(slo), r, rank) for rank, r in enumerate(results, 1)]
    out.wall_s = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------------------------


def _cell(r: SetupResult) -> str:
    if r.at_sustained is None:
        return "- (SLO below unloaded latency)"
    j = r.j_per_request
    return f"{r.goodput_per_gpu:.2f} ({'-' if j is None else f'{j:.0f} J'})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def markdown(p: Predictions) -> str:
    prov = p.profile.provenance
    lines = ["# Planner predictions", ""]
    if prov.source == "derived":
        lines += [
            "> **Derived profile.** Scaled from a measured profile of another model by stated rules "
            "(planner/derive.py; the profile's provenance notes name the base and every ratio), not measured "
            "on this model: these predictions stand or fall with those rules.",
            "",
        ]
    elif prov.source != "measured":
        lines += [
            f"> **NOT predictions.** The profile is `{prov.source}` (made-up constants), not measured: "
            "these numbers only exercise the planner. Measure the profile on the GPU host and rerun "
            "`python -m planner predict --profile <that file> --out <folder>` before committing any.",
            "",
        ]
    c = p.config
    lines += [
        f"Profile: {prov.model} on {prov.gpu or 'unknown device'} (source: **{prov.source}**).",
        "",
        "```",
        p.profile.describe(),
        "```",
        "",
        f"Random workloads of fixed lengths, {c.arrival} arrivals, seed {c.seed}; "
        f"max({c.requests_per_gpu} x GPUs, {c.min_requests}) requests per simulated run; a run that meets "
        f"the SLO with arrivals under 3 mean E2Es runs again on them repeated, up to {MAX_REPEATS}x (a ramp "
        "is not the load). Sustained rate: "
        f"the highest rate with >= {c.target:.0%} of requests meeting the SLO (bisection to "
        f"{c.precision:.0%}). Cells: goodput per GPU (req/s) at the sustained rate, with J per request "
        "there (all GPUs of the setup, static + dynamic); the best setup of each row in bold. To check on "
        "a 4-GPU host: run each setup's rate sweep with the campaign script and compare with "
        "`python -m planner validate`.",
        "",
    ]
    for shape, (n_in, n_out) in p.shapes.items():
        lines += [f"## {shape} ({n_in} -> {n_out} tokens)", "", "### 4 GPUs", ""]
        setups = list(dict.fromkeys(x.result.setup.name for x in p.fixed if x.shape == shape))
        rows = []
        for slo in p.slos:
            mine = {x.result.setup.name: x.result for x in p.fixed if x.shape == shape and x.slo == slo}
            top = max(mine.values(), key=lambda r: r.goodput_per_gpu)
            rows.append(
                [slo_label(slo)]
                + [
                    (f"**{_cell(mine[s])}**" if mine[s] is top and top.sustained_rps > 0 else _cell(mine[s]))
                    for s in setups
                ]
            )
        lines += _table(["SLO (ms)", *setups], rows)
        for gpus in sorted({x.result.setup.gpus for x in p.best if x.shape == shape}):
            lines += [f"### Best on {gpus} GPUs", ""]
            rows = []
            for slo in p.slos:
                ranked = [
                    x.result
                    for x in p.best
                    if x.shape == shape and x.slo == slo and x.result.setup.gpus == gpus
                ]
                rows.append([slo_label(slo)] + [f"{r.setup.name}: {_cell(r)}" for r in ranked])
            width = max((len(r) for r in rows), default=1) - 1
            lines += _table(["SLO (ms)", *(f"#{i}" for i in range(1, width + 1))], rows)
    notes = sorted(
        {
            f"- {x.result.setup.name} ({x.shape}, {slo_label(x.slo)}): {x.result.note}"
            for x in p.fixed + p.best
            if x.result.note
        }
    )
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------


def add_predict_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("predict", help="predictions: 4-GPU xPyD ratios and the best on 8/16/64 GPUs")
    p.add_argument(
        "--profile", required=True, help="profile JSON (python -m planner profile), or 'illustrative'"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for predictions.md / .json")
    p.add_argument(
        "--slo-grid",
        type=arg_type(parse_slo_grid),
        default=DEFAULT_SLO_GRID,
        help=f"SLO bounds in ms, every combination is one SLO (default: {grid_text(DEFAULT_SLO_GRID)!r})",
    )
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"workload shapes, of {', '.join(SHAPES)}")
    p.add_argument("--setups", default=",".join(FIXED_SETUPS), help="setups predicted at every SLO")
    p.add_argument(
        "--gpus", default=",".join(map(str, BEST_GPUS)), help="GPU counts searched for the best setups"
    )
    p.add_argument("--top", type=int, default=3, help="best setups kept per GPU count")
    p.add_argument("--target", type=float, default=0.9, help="SLO attainment that counts as sustained")
    p.add_argument("--requests-per-gpu", type=int, default=300)
    p.add_argument("--num-requests", type=int, default=2000, help="at least this many requests per run")
    p.add_argument("--precision", type=float, default=0.02, help="relative precision of the sustained rate")
    p.add_argument("--seed", type=int, default=0)


def cmd_predict(args: argparse.Namespace, profile: Profile) -> int:
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise ValueError(f"unknown shape(s) {unknown or args.shapes!r}; use {', '.join(SHAPES)}")
    try:
        gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--gpus {args.gpus!r}: give GPU counts, e.g. 8,16,64") from None
    slos = slo_cells(args.slo_grid)
    cfg = SearchConfig(
        slos[0],
        args.target,
        args.precision,
        "poisson",
        1.0,
        args.seed,
        args.requests_per_gpu,
        args.num_requests,
    )
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    result = predict(profile, {n: SHAPES[n] for n in names}, slos, cfg, setups, gpus, args.top, print)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {**result.to_dict(), "slo_grid": args.slo_grid}
    (args.out / "predictions.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (args.out / "predictions.md").write_text(markdown(result))
    print(f"wrote {args.out / 'predictions.md'} and {args.out / 'predictions.json'} in {result.wall_s:.0f} s")
    return 0

"""`python -m planner policies`: pre-registered predictions of the proxy's per-request policies.

On 2 GPUs: one instance, two replicas, and a 1P1D pair under each policy (split, local, threshold:N,
load; testbed/route_rule.py), for each workload (the frontier's two shapes and the Azure conversation
trace's lengths under Poisson arrivals), at every cell of an SLO grid: the sustained rate (>= 90% of
requests meet the SLO) per GPU and per kW, J per request there, and the share of requests the policy
served locally. Beside them, where a measured frontier exists (`--measured`), the one instance's and the
replicas' measured sustained rates (analysis/frontier.py), which the predictions should be read against.

    python -m planner policies --profile results/profiles/h200-8b-nixl.json \\
        --trace ../shared/traces/azure_conv_2023.csv --measured results/h200x2/frontier \\
        --out results/planner/policies-h200-8b
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.frontier import SloGrid, build_frontier
from analysis.runs import find_results, load_runs
from experiments.schema import AGGREGATED_KINDS, CAMPAIGN_SETUPS, parse_form
from experiments.slo import DEFAULT_SLO_GRID, parse_slo_grid
from planner.profile_model import Profile
from planner.search import RunCache, SearchConfig, SetupResult, sustained_rate, workload_for
from planner.setups import parse_setup
from planner.validate import slo_cells, slo_label
from planner.validate_report import grid_text
from planner.workload import WorkloadSpec
from testbed.cli_errors import arg_type

SHAPES: dict[str, tuple[int, int]] = {"prefill-heavy": (2048, 256), "decode-heavy": (512, 1024)}
TRACE = "azure-conv"
BASELINES = ("single", "replicas:2")
POLICIES = (
    "split",
    "local",
    "threshold:512",
    "threshold:1024",
    "threshold:2048",
    "load",
    "load:2048:128",
    "load:8192:256",
)
MEASURED_NAMES = {name: parse_form(name).label() for name in BASELINES}  # the frontier's setup labels
# The campaign's result folders of those setups (single, replicas).
MEASURED_DIRS = tuple(s.name for s in CAMPAIGN_SETUPS.values() if s.kind in AGGREGATED_KINDS)


@dataclass(frozen=True)
class Cell:
    workload: str
    slo: dict[str, float]
    result: SetupResult

    @property
    def per_gpu(self) -> float:
        return self.result.goodput_per_gpu

    @property
    def per_kw(self) -> float | None:
        """Sustained rate per kW of the setup's average power there (all its GPUs, static + dynamic)."""
        out = self.result.at_sustained
        if out is None:
            return 0.0
        e = out.energy
        if e.static_j is None or e.dynamic_j is None or e.duration_s <= 0:
            return None
        return self.result.sustained_rps / ((e.static_j + e.dynamic_j) / e.duration_s / 1000)

    def to_dict(self) -> dict[str, Any]:
        out = self.result.at_sustained
        return {
            "workload": self.workload,
            "slo": self.slo,
            "setup": self.result.setup.name,
            "gpus": self.result.setup.gpus,
            "sustained_rps": self.result.sustained_rps,
            "per_gpu": self.result.goodput_per_gpu,
            "per_kw": self.per_kw,
            "j_per_request": self.result.j_per_request,
            "local_share": None if out is None else out.local_share,
            "note": self.result.note,
        }


def workloads(trace: str | None, seed: int) -> dict[str, WorkloadSpec]:
    specs = {
        name: WorkloadSpec(kind="random", input_len=i, output_len=o, seed=seed)
        for name, (i, o) in SHAPES.items()
    }
    if trace is not None:
        specs[TRACE] = WorkloadSpec(kind="trace", dataset=trace, seed=seed)
    return specs


def predict_policies(
    profile: Profile,
    specs: dict[str, WorkloadSpec],
    slos: Sequence[dict[str, float]],
    cfg: SearchConfig,
    setups: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> list[Cell]:
    cells: list[Cell] = []
    for name, spec in specs.items():
        workload = workload_for(spec, 2, cfg)  # one draw of requests for every setup of a workload
        for text in setups:
            setup = parse_setup(text)
            t0 = time.perf_counter()
            runs = RunCache(profile, setup, workload, cfg, profile.engine)
            for slo in slos:
                one = dataclasses.replace(cfg, slo=dict(slo))
                result = sustained_rate(profile, setup, workload, one, profile.engine, runs)
                cells.append(Cell(name, dict(slo), result))
            if progress:
                progress(f"{name}: {setup.name}, {runs.simulations} runs, {time.perf_counter() - t0:.0f} s")
    return cells


def measured_rates(root: Path, grid: dict[str, tuple[float, ...]]) -> dict[tuple[str, str, str], tuple]:
    """(workload, setup, slo label) -> (per GPU, per kW, lower bound?) of the measured frontiers under
    `root`/<shape>/ for the baselines (one instance, replicas)."""
    out: dict[tuple[str, str, str], tuple] = {}
    sgrid = SloGrid(tuple(grid["ttft"]), tuple(grid["tpot"]))
    for shape in SHAPES:
        paths = [p for sub in MEASURED_DIRS for p in find_results(root / shape / sub)]
        if not paths:
            continue
        frontier = build_frontier(load_runs(paths), sgrid, 0.9)
        for ours, label in MEASURED_NAMES.items():
            for i, j in sgrid.cells:
                cap = frontier.capacity.get((label, i, j))
                if cap is not None:
                    slo = {"ttft": sgrid.ttft_ms[i], "tpot": sgrid.tpot_ms[j]}
                    out[(shape, ours, slo_label(slo))] = (cap.per_gpu, cap.per_kw, cap.lower_bound)
    return out


def _f(v: float | None, lower: bool = False) -> str:
    return "n/a" if v is None else (">=" if lower else "") + f"{v:.2f}"


def markdown(
    profile: Profile, cells: list[Cell], measured: dict, slos: Sequence[dict[str, float]], precision: float
) -> str:
    names = list(dict.fromkeys(c.result.setup.name for c in cells))
    lines = [
        "# Per-request policies on 2 GPUs: predictions",
        "",
        f"Profile: {profile.provenance.model} on {profile.provenance.gpu or '?'} "
        f"(source: **{profile.provenance.source}**). Sustained rate = the highest Poisson rate with >= 90% "
        "of requests meeting both bounds. `1P1D <policy>`: the pair under that per-request policy "
        "(split = always P then D; local = D alone; threshold:N = split at >= N prompt tokens; "
        "load:P:D = local while the prefill instance holds >= P prompt tokens in flight and D < D "
        "requests). *meas.*: measured on 2 x H200 (vLLM 0.23, results/h200x2/frontier), >= where the "
        "sweep never saturated. Bold: the best predicted setup of the row.",
        "",
    ]
    for workload in dict.fromkeys(c.workload for c in cells):
        for metric, title in (("per_gpu", "req/s per GPU"), ("per_kw", "req/s per kW")):
            lines += [f"## {workload}: {title}", ""]
            header = ["SLO (ms)", "meas. 1 instance", "meas. 2 replicas", *names, "local share (load)"]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for slo in slos:
                label = slo_label(slo)
                mine = {c.result.setup.name: c for c in cells if c.workload == workload and c.slo == slo}
                vals = {
                    n: (c.result.goodput_per_gpu if metric == "per_gpu" else c.per_kw)
                    for n, c in mine.items()
                }
                best = max((v for v in vals.values() if v is not None), default=None)
                row = [label]
                for base in BASELINES:
                    m = measured.get((workload, base, label))
                    row.append("-" if m is None else _f(m[0] if metric == "per_gpu" else m[1], m[2]))
                for n in names:
                    v = vals.get(n)
                    text = _f(v)
                    row.append(f"**{text}**" if v is not None and best and v == best else text)
                load = next((c for n, c in mine.items() if n.endswith("load:4096:32")), None)
                share = load.result.at_sustained.local_share if load and load.result.at_sustained else None
                row.append("-" if share is None else f"{share:.0%}")
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join([*lines, *verdicts(cells, slos, precision)])


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    return "inf" if b == 0 and a > 0 else ("-" if b == 0 else f"{a / b:.2f}x")


def verdicts(cells: list[Cell], slos: Sequence[dict[str, float]], precision: float) -> list[str]:
    """Per workload, metric and SLO cell: the best 1P1D policy (every one within the search's precision
    of the best is named: closer than that the bisection cannot tell them apart), and how it compares
    with always splitting and with the better of one instance and two replicas."""
    lines = [
        "## Verdicts: which policy wins each cell",
        "",
        f"Policies within {precision:.0%} of the best (the sustained rates' precision) are all named.",
        "",
    ]
    for workload in dict.fromkeys(c.workload for c in cells):
        for metric in ("per_gpu", "per_kw"):
            lines += [f"### {workload}, {metric.replace('_', ' ')}", ""]
            header = ["SLO (ms)", "best 1P1D policy", "vs split", "vs best of 1 instance / 2 replicas"]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for slo in slos:
                mine = {c.result.setup.name: c for c in cells if c.workload == workload and c.slo == slo}

                def value(name: str, mine: dict[str, Cell] = mine, metric: str = metric) -> float | None:
                    c = mine.get(name)
                    return None if c is None else (c.per_gpu if metric == "per_gpu" else c.per_kw)

                pd = {n: value(n) for n in mine if n.startswith("1P1D")}
                pd = {n: v for n, v in pd.items() if v is not None}
                if not pd:
                    continue
                top = max(pd.values())
                best = [n for n, v in pd.items() if v >= top * (1 - precision)]
                base = [v for n in BASELINES if (v := value(parse_setup(n).name)) is not None]
                names = ", ".join(n.removeprefix("1P1D").strip() or "split" for n in best)
                lines.append(
                    f"| {slo_label(slo)} | {names} | {_ratio(top, pd.get('1P1D'))} | "
                    f"{_ratio(top, max(base) if base else None)} |"
                )
            lines.append("")
    return lines


def add_policies_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "policies", help="pre-registered predictions: per-request policies of a 1P1D pair on 2 GPUs"
    )
    p.add_argument("--profile", required=True, help="profile JSON (python -m planner profile)")
    p.add_argument("--out", type=Path, required=True, help="folder for policies.md / .json")
    p.add_argument("--trace", default=None, help="Azure CSV or Mooncake JSONL: its lengths, Poisson arrivals")
    p.add_argument("--measured", type=Path, default=None, help="measured frontier folder (<shape>/single...)")
    p.add_argument("--policies", default=",".join(POLICIES), help="per-request policies of the 1P1D pair")
    p.add_argument(
        "--slo-grid",
        type=arg_type(parse_slo_grid),
        default=DEFAULT_SLO_GRID,
        help=f"SLO bounds in ms, every combination is one SLO (default: {grid_text(DEFAULT_SLO_GRID)!r})",
    )
    p.add_argument("--num-requests", type=int, default=2000, help="at least this many requests per run")
    p.add_argument("--precision", type=float, default=0.02, help="relative precision of the sustained rate")
    p.add_argument("--seed", type=int, default=0)


def cmd_policies(args: argparse.Namespace, profile: Profile) -> int:
    slos = slo_cells(args.slo_grid)
    cfg = SearchConfig(slos[0], 0.9, args.precision, "poisson", 1.0, args.seed, 300, args.num_requests)
    setups = [*BASELINES, *(f"1P1D/{p.strip()}" for p in args.policies.split(",") if p.strip())]
    t0 = time.perf_counter()
    cells = predict_policies(profile, workloads(args.trace, args.seed), slos, cfg, setups, print)
    measured = measured_rates(args.measured, args.slo_grid) if args.measured else {}
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "kind": "planner-policy-predictions",
        "profile": dataclasses.asdict(profile.provenance),
        "profile_description": profile.describe(),
        "trace": args.trace,
        "slo_grid": args.slo_grid,
        "search": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "slo"},
        "setups": setups,
        "cells": [c.to_dict() for c in cells],
        "measured": [
            {"workload": w, "setup": s, "slo": label, "per_gpu": v[0], "per_kw": v[1], "lower_bound": v[2]}
            for (w, s, label), v in measured.items()
        ],
        "wall_s": time.perf_counter() - t0,
    }
    (args.out / "policies.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (args.out / "policies.md").write_text(markdown(profile, cells, measured, slos, cfg.precision))
    print(f"wrote {args.out / 'policies.md'} and {args.out / 'policies.json'} in {doc['wall_s']:.0f} s")
    return 0

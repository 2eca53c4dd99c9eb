"""`python -m planner validate`: replay measured sweeps (planner/validate.py), write markdown and JSON.

    python -m planner validate --profile results/profiles/h200-8b.json --measured results/h200x2/frontier

Writes validation.md and validation.json into --out (default: <measured>/planner-validation, with the
profile's source appended when it is not "measured"). A profile that is not measured gets a banner:
its numbers test the simulator's structure, not the planner's claims.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable
from pathlib import Path

from analysis.sustained import SustainedRate
from experiments.slo import DEFAULT_SLO_GRID, parse_slo_grid
from planner.profile_model import Profile
from planner.validate import (
    Figures,
    PointComparison,
    RateComparison,
    Validation,
    slo_cells,
    validate,
)
from testbed.cli_errors import arg_type

MARK = {"pass": "pass", "miss": "**MISS**", "undetermined": "undetermined"}


def grid_text(grid: dict[str, tuple[float, ...]]) -> str:
    return " ".join(f"{k}={','.join(f'{v:g}' for v in vs)}" for k, vs in grid.items())


def add_validate_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate", help="replay measured sweeps in the simulator and compare side by side")
    p.add_argument(
        "--profile", required=True, help="profile JSON (python -m planner profile), or 'illustrative'"
    )
    p.add_argument(
        "--measured", type=Path, required=True, help="folder of measured runs, searched recursively"
    )
    p.add_argument(
        "--slo-grid",
        type=arg_type(parse_slo_grid),
        default=DEFAULT_SLO_GRID,
        help=f"SLO bounds in ms, every combination is one SLO (default: {grid_text(DEFAULT_SLO_GRID)!r})",
    )
    p.add_argument("--target", type=float, default=0.9, help="SLO attainment that counts as sustained")
    p.add_argument("--rate-tolerance", type=float, default=0.15, help="sustained rate criterion (relative)")
    p.add_argument("--j-tolerance", type=float, default=0.10, help="J per request criterion (relative)")
    p.add_argument("--out", type=Path, default=None, help="folder for validation.md / .json")


def default_out(measured: Path, profile: Profile) -> Path:
    source = profile.provenance.source
    return measured / ("planner-validation" if source == "measured" else f"planner-validation-{source}")


def cmd_validate(args: argparse.Namespace, profile: Profile) -> int:
    grid = args.slo_grid
    v = validate(
        profile, args.measured, slo_cells(grid), args.target, args.rate_tolerance, args.j_tolerance, print
    )
    out = args.out or default_out(args.measured, profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps({**v.to_dict(), "slo_grid": grid}, indent=1) + "\n")
    (out / "validation.md").write_text(markdown(v, grid))
    c = v.counts()
    print(
        f"J per request within {v.j_tolerance:.0%}: {c['j_per_request']['pass']} of {len(v.points)} runs; "
        f"sustained rate within {v.rate_tolerance:.0%}: {c['sustained_rate']['pass']} pass, "
        f"{c['sustained_rate']['miss']} miss, {c['sustained_rate']['undetermined']} undetermined "
        f"of {len(v.rates)}"
    )
    print(f"wrote {out / 'validation.md'} and {out / 'validation.json'}")
    return 0


# ---------------------------------------------------------------------------------------------------------


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isinf(value) else f"{100 * value:+.1f}%"


def _pair(m: float | None, p: float | None, fmt: str = ".1f") -> str:
    return f"{_f(m, fmt)} / {_f(p, fmt)}"


def _energy(f: Figures) -> str:
    if f.j_per_request is None:
        return "-"
    return f"{f.j_per_request:.1f} ({_f(f.static_j_per_request, '.0f')}+{_f(f.dynamic_j_per_request, '.0f')})"


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def _by_shape(items: Iterable[PointComparison | RateComparison]) -> dict[str, list]:  # type: ignore[type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for item in items:
        out.setdefault(item.shape, []).append(item)
    return out


def _bracket(s: SustainedRate) -> str:
    """The bracketing points as attainment @ nominal rate (realized rate, the axis)."""
    pts = (s.passing, s.failing)
    return " -> ".join(f"{pt.attainment:.2f} @ {pt.text()}" for pt in pts if pt is not None)


def _banner(v: Validation) -> list[str]:
    src = v.profile.provenance.source
    if src == "measured":
        return []
    if src == "derived":
        return [
            "> **Derived profile.** Scaled from another model's measured profile (planner/derive.py), not "
            "measured on this model: these tables judge the scaling rules together with the simulator.",
            "",
        ]
    return [
        f"> **NOT a validation.** The profile is `{src}`: its constants are made up "
        "(planner/illustrative.py), not measured. These tables test the simulator's structure and show "
        "which effects a made-up profile misses; they say nothing about the planner's accuracy. Measure "
        "the profile on the GPU host (`python -m planner profile ...`) and rerun "
        "`python -m planner validate --profile <that file> --measured <this folder's parent>`.",
        "",
    ]


def markdown(v: Validation, grid: dict[str, tuple[float, ...]]) -> str:
    c = v.counts()
    prov = v.profile.provenance
    lines = [f"# Planner validation: {v.measured_root}", ""]
    lines += _banner(v)
    lines += [
        f"Profile: {prov.model} on {prov.gpu or 'unknown device'} (source: **{prov.source}**).",
        "",
        "```",
        v.profile.describe(),
        "```",
        "",
        "Every measured run is replayed in the simulator with the same request lengths, the same arrival "
        "process and seed (the runner's schedule), the same setup and the engine limits the run's "
        "instances recorded. Cells read measured / predicted. J per request counts the serving GPUs "
        "(a single instance's idle neighbour is left out) over the run's metered window. The "
        f"SLO-sustaining rate is the highest measured rate with >= {v.target:.0%} of requests meeting "
        "the SLO, interpolated toward the next rate above it, on both sides over the same points "
        "(analysis/sustained.py, the frontier's rule: a rate meeting it again above a miss counts); "
        "repeats of one rate are pooled; failed requests miss every SLO. The rate axis is the realized "
        "offered rate: the mean `summary.arrival_rate` of the measured runs at each nominal rate, shown "
        "in brackets after it (the nominal where a run recorded none); the replay sends the same arrival "
        "offsets, so the predicted side stands on the same axis.",
        "",
        f"Criteria: sustained rate within {v.rate_tolerance:.0%} of measured; J per request "
        f"within {v.j_tolerance:.0%}. SLO grid: {grid_text(grid)} (ms), every combination.",
        "",
        "## Summary",
        "",
    ]
    j, r = c["j_per_request"], c["sustained_rate"]
    lines += _table(
        ["criterion", "pass", "miss", "undetermined / n.a.", "of"],
        [
            [f"J per request within {v.j_tolerance:.0%}", str(j["pass"]), str(j["miss"]), str(j["n/a"]),
             str(len(v.points))],
            [f"sustained rate within {v.rate_tolerance:.0%}", str(r["pass"]), str(r["miss"]),
             str(r["undetermined"]), str(len(v.rates))],
        ],
    )  # fmt: skip
    rows = []
    for shape, pts in _by_shape(v.points).items():
        for setup in dict.fromkeys(p.setup for p in pts):
            mine = [p for p in pts if p.setup == setup]
            rates = [x for x in v.rates if x.shape == shape and x.setup == setup]
            errs = [abs(p.j_error) for p in mine if p.j_error is not None]
            rows.append([
                shape, setup,
                f"{sum(bool(p.j_pass) for p in mine)} of {len(mine)}",
                f"{100 * max(errs):.1f}%" if errs else "-",
                f"{sum(x.agreement.verdict == 'pass' for x in rates)} / "
                f"{sum(x.agreement.verdict == 'miss' for x in rates)} / "
                f"{sum(x.agreement.verdict == 'undetermined' for x in rates)}",
            ])  # fmt: skip
    lines += _table(["shape", "setup", "J/request pass", "worst J error", "rate pass / miss / undet."], rows)

    lines += ["## SLO-sustaining rate, measured vs predicted (req/s)", ""]
    for shape, items in _by_shape(v.rates).items():
        lines += [f"### {shape}", ""]
        lines += _table(
            ["setup", "SLO (ms)", "measured", "bracket (attain @ rate (arrived))", "predicted", "bracket",
             "error", "verdict"],
            [
                [x.setup, x.slo_label, x.measured.text(), _bracket(x.measured),
                 x.predicted.text(), _bracket(x.predicted), _rate_error(x),
                 MARK[x.agreement.verdict]]
                for x in items
            ],
        )  # fmt: skip

    lines += ["## Every run, measured / predicted", ""]
    for shape, pts in _by_shape(v.points).items():
        lines += [f"### {shape}", ""]
        lines += _table(
            ["setup", "req/s", "arrived req/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms",
             "done/s", "J/req measured (st+dyn)", "J/req predicted (st+dyn)", "J error",
             f"within {v.j_tolerance:.0%}"],
            [
                [p.setup, f"{p.rate:g}", _f(p.arrived_rps, ".2f"),
                 _pair(p.measured.ttft_p50_ms, p.predicted.ttft_p50_ms),
                 _pair(p.measured.ttft_p99_ms, p.predicted.ttft_p99_ms),
                 _pair(p.measured.tpot_p50_ms, p.predicted.tpot_p50_ms, ".2f"),
                 _pair(p.measured.tpot_p99_ms, p.predicted.tpot_p99_ms, ".2f"),
                 _pair(p.measured.throughput_rps, p.predicted.throughput_rps, ".2f"),
                 _energy(p.measured), _energy(p.predicted), _pct(p.j_error),
                 "-" if p.j_pass is None else "yes" if p.j_pass else "**no**"]
                for p in pts
            ],
        )  # fmt: skip

    lines += ["## SLO attainment per run, measured / predicted", ""]
    labels = list(v.points[0].attainment) if v.points else []
    for shape, pts in _by_shape(v.points).items():
        lines += [f"### {shape}", ""]
        lines += _table(
            ["setup", "req/s", *labels],
            [
                [p.setup, f"{p.rate:g}", *(f"{a:.2f} / {b:.2f}" for a, b in p.attainment.values())]
                for p in pts
            ],
        )
    notes = [f"- {p.run}: {n}" for p in v.points for n in p.notes]
    notes += [f"- skipped {s.run}: {s.reason}" for s in v.skipped]
    nominal = dict.fromkeys(f"{x.shape} / {x.setup}" for x in v.rates if x.measured.nominal_axis)
    notes += [f"- {n}: a run recorded no realized arrival rate; its nominal rate stands in" for n in nominal]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


def _rate_error(x: RateComparison) -> str:
    a = x.agreement
    if a.min_error == a.max_error:
        return _pct((x.predicted.rate - x.measured.rate) / x.measured.rate)
    high = "inf" if math.isinf(a.max_error) else f"{100 * a.max_error:.0f}%"
    return f"{100 * a.min_error:.0f}% to {high}"

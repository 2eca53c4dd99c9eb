"""A frontier as text: frontier.md (tables, plots referenced) and the winner tables in the terminal."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.comparability import serving_stack
from analysis.frontier import Capacity, Frontier, Metric, Verdict
from analysis.markdown import fmt, md_table, plots_and_notes
from analysis.sustained import SweepPoint

FRONTIER_FILE = "frontier.md"
METRIC_TITLE: dict[Metric, str] = {
    "per_gpu": "goodput per GPU (req/s per GPU)",
    "per_kw": "goodput per kW of measured average power (req/s per kW)",
}


def pct(share: float) -> str:
    return "n/a" if math.isnan(share) else f"{100 * share:.1f}%"


def point_text(p: SweepPoint) -> str:
    """'16 (14.7) req/s: 95.0%': the nominal rate, the realized one (the axis), the attainment."""
    return f"{p.text()} req/s: {pct(p.attainment)}"


def bracket_text(c: Capacity) -> str:
    """The measured rates around the sustained rate, with their attainments."""
    if c.status == "never met":
        assert c.high is not None
        return f"lowest rate {point_text(c.high)}"
    assert c.low is not None
    if c.high is None:
        return f"{point_text(c.low)} (highest rate measured)"
    return f"{point_text(c.low)} → {point_text(c.high)}"


def value_text(c: Capacity, metric: Metric | None = None) -> str:
    """The sustained rate (metric None), or per GPU / per kW: '4.67', '≥ 12', 'never met'."""
    if c.status == "never met":
        return "never met"
    value = c.rate if metric is None else c.value(metric)
    if value is None:
        return "n/a (no power)"
    return f"≥ {fmt(value)}" if c.lower_bound else fmt(value)


def verdict_text(v: Verdict, markdown: bool = True) -> str:
    """'**2 replicas** ×1.48 (6.78 vs 4.58, 1 instance)', '**A**? (≥20.0 vs ≥10.0, B; ...)' ..."""
    if v.leader is None:
        return "none meets it"
    lead = f"**{v.leader}**" if markdown else v.leader
    ratio = "" if v.ratio is None or math.isinf(v.ratio) else f"{v.ratio:.2f}"
    lb = v.qualifier in ("at least", "unknown"), v.qualifier in ("at most", "unknown")
    a, b = (("≥" if bound else "") + fmt(x) for x, bound in zip(v.values, lb, strict=True))
    return {
        "alone": f"{lead} ({a}; the only setup with a value)",
        "only": f"{lead} only ({a}; the others never meet it)",
        "exact": f"{lead} ×{ratio} ({a} vs {b}, {v.runner_up})",
        "tie": f"tie: {v.leader} = {v.runner_up} ({a})",
        "at least": f"{lead} ≥×{ratio} ({a} vs {b}, {v.runner_up})",
        "at most": f"{lead}? ≤×{ratio} ({a} vs {b}, {v.runner_up}: not saturated, may lead)",
        "unknown": f"{lead}? ({a} vs {b}, {v.runner_up}; neither saturated)",
    }[v.qualifier]


def winner_table(f: Frontier, metric: Metric, markdown: bool = True) -> tuple[list[str], list[list[str]]]:
    header = ["TTFT bound \\ TPOT bound", *(f"TPOT ≤ {t:g} ms" for t in f.grid.tpot_ms)]
    rows = [
        [
            f"TTFT ≤ {ttft:g} ms",
            *(verdict_text(f.verdicts[(metric, i, j)], markdown) for j in range(len(f.grid.tpot_ms))),
        ]
        for i, ttft in enumerate(f.grid.ttft_ms)
    ]
    return header, rows


def capacity_rows(f: Frontier) -> list[list[str]]:
    rows = []
    for i, j in f.grid.cells:
        for s in f.setups:
            c = f.capacity[(s.name, i, j)]
            rows.append(
                [
                    f"{f.grid.ttft_ms[i]:g}",
                    f"{f.grid.tpot_ms[j]:g}",
                    s.name,
                    value_text(c),
                    value_text(c, "per_gpu"),
                    value_text(c, "per_kw"),
                    bracket_text(c),
                    "n/a" if c.power_w is None else fmt(c.power_w),
                ]
            )
    return rows


def attainment_rows(f: Frontier) -> tuple[list[str], list[list[str]]]:
    header = ["setup", "offered (req/s)", "arrived (req/s)", "achieved (req/s)", "requests"]
    header += [f"{f.grid.ttft_ms[i]:g}/{f.grid.tpot_ms[j]:g}" for i, j in f.grid.cells]
    rows = [
        [
            s.name,
            f"{p.rate:g}",
            fmt(p.arrived_rps),
            fmt(p.achieved_rps),
            str(p.measured),
            *(pct(float(p.attainment[i, j])) for i, j in f.grid.cells),
        ]
        for s in f.setups
        for p in s.points
    ]
    return header, rows


def energy_rows(f: Frontier) -> tuple[list[str], list[list[str]]]:
    header = [
        "setup",
        "offered (req/s)",
        "achieved (req/s)",
        "avg power, setup's GPUs (W)",
        "J/request",
        "static J/request",
        "dynamic J/request",
        "J/output token",
        "static J/token",
        "dynamic J/token",
    ]
    rows = [
        [
            s.name,
            f"{p.rate:g}",
            fmt(p.achieved_rps),
            fmt(p.avg_power_w),
            *(fmt(p.per(part, "request")) for part in ("energy_j", "static_j", "dynamic_j")),
            *(fmt(p.per(part, "token")) for part in ("energy_j", "static_j", "dynamic_j")),
        ]
        for s in f.setups
        for p in s.points
    ]
    return header, rows


def render_frontier(
    f: Frontier, plots: Sequence[tuple[str, str]] = (), plot_notes: Sequence[str] = ()
) -> str:
    level = f"{100 * f.level:g}%"
    out = [f"# SLO frontier: {f.shape}", ""]
    out += [f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %z')} by compare_performance.py --frontier.", ""]
    out += [f"Model {f.model}, hardware {f.hardware}.", ""]
    out += ["## Setups", ""]
    out += md_table(
        ["setup", "kind", "engine", "GPUs", "offered rates (req/s)", "runs"],
        [
            [
                s.name,
                s.kind,
                ", ".join(sorted({serving_stack(r) for p in s.points for r in p.runs})),
                str(s.num_gpus) + ("" if s.gpus_source == "recorded" else f" ({s.gpus_source})"),
                ", ".join(f"{r:g}" for r in s.rates),
                str(sum(len(p.runs) for p in s.points)),
            ]
            for s in f.setups
        ],
    )
    out += [
        "",
        f"SLO attainment = share of measured requests (failed ones count as misses) with TTFT and TPOT both "
        f"within the cell's bounds. Per cell, each setup's sustained rate is the highest measured offered "
        f"rate with attainment ≥ {level}, interpolated linearly toward the next measured rate above it "
        "(both shown; a rate that meets the level again above a miss counts, and the notes name such "
        "dips); '≥' marks a setup that still meets it at its highest rate (never saturated: a lower "
        "bound). The rate axis is the realized offered rate: the rate the requests arrived at (each "
        "run's `summary.arrival_rate`, mean over repeats), shown in brackets after the nominal rate "
        "asked for; a run that recorded none stands at its nominal rate (noted). "
        "Every figure counts the setup's GPUs: per GPU divides by them, per kW by their average power "
        "over the measured window (interpolated the same way), and energy is theirs (a monitored GPU the "
        "setup left idle is in none). The ratio is the leader over the runner-up.",
        "",
    ]
    for metric in ("per_gpu", "per_kw"):
        out += [f"## Winner per SLO cell: {METRIC_TITLE[metric]}", ""]
        out += md_table(*winner_table(f, metric))
        out.append("")
    out += [f"## Sustained rate per SLO cell (attainment ≥ {level})", ""]
    out += md_table(
        [
            "TTFT ≤ (ms)",
            "TPOT ≤ (ms)",
            "setup",
            "sustained (req/s)",
            "per GPU",
            "per kW",
            "bracketing measured rates: attainment",
            "avg power (W)",
        ],
        capacity_rows(f),
    )
    out += ["", "## SLO attainment per offered rate", "", "Columns: TTFT bound / TPOT bound (ms).", ""]
    out += md_table(*attainment_rows(f))
    out += ["", "## Energy vs offered rate (the setup's GPUs, static = idle power × window)", ""]
    out += md_table(*energy_rows(f))
    out.append("")
    out += plots_and_notes(plots, [*f.notes, *plot_notes])
    return "\n".join(out)


def write_frontier(
    f: Frontier, out_dir: str | Path, plots: Sequence[tuple[str, str]] = (), plot_notes: Sequence[str] = ()
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / FRONTIER_FILE
    path.write_text(render_frontier(f, plots, plot_notes), encoding="utf-8")
    return path


def print_frontier(f: Frontier, console: Any = None) -> None:
    """The two winner tables with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=200)
    console.print(f"SLO frontier: {f.shape}; attainment ≥ {100 * f.level:g}%")
    for metric in ("per_gpu", "per_kw"):
        header, rows = winner_table(f, metric, markdown=False)
        table = Table(title=f"Winner per SLO cell, {METRIC_TITLE[metric]}")
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)

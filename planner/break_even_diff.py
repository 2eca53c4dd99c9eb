"""`python -m planner break-even-diff BEFORE AFTER [--out DIFF.md]`: two break-even maps, cell by cell.

When a model's profile goes from derived to measured (or a planner change reprices a map), this says
what moved: per model and per metric (per GPU, per kW), the cells where P/D pays before and after, the
cells that flipped (P/D <-> aggregated, or into / out of "neither sustains the SLO"), how far the
margins moved, and which flips stay within +-TOLERANCE on both sides (inside the planner's stated
error: not a verdict either way). Cells are matched by model, workload, GPU count and SLO column (the
SLO, or its scale); a cell in one map only is counted, not compared. BEFORE / AFTER: a break_even.json,
or REV:PATH for one committed in git (e.g. 9344f50:results/planner/break-even/break_even.json).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from analysis.markdown import md_table
from planner.break_even_report import pct
from planner.slo_scale import scale_label

TOLERANCE = 0.15  # the validation criterion: P/D and aggregated closer than this are a toss-up
METRICS = (("margin_gpu", "per GPU"), ("margin_kw", "per kW"))
Verdict = Literal["P/D", "aggregated", "neither"]


def verdict(margin: float | None) -> Verdict:
    """Whom a cell's margin (P/D / aggregated - 1; inf: only P/D sustains; None: neither) favours."""
    if margin is None:
        return "neither"
    return "P/D" if margin > 0 else "aggregated"


@dataclass(frozen=True)
class Flip:
    model: str
    workload: str
    gpus: int
    column: str
    metric: str
    before: float | None
    after: float | None

    @property
    def marginal(self) -> bool:
        """Both margins within +-TOLERANCE: a flip inside the planner's error."""
        return all(m is not None and abs(m) <= TOLERANCE for m in (self.before, self.after))


@dataclass(frozen=True)
class MetricDiff:
    metric: str
    cells: int  # compared
    wins_before: int
    wins_after: int
    flips: list[Flip]
    shifts: list[float]  # after - before, where both margins are finite


@dataclass(frozen=True)
class ModelDiff:
    model: str
    source_before: str
    source_after: str
    only_before: int
    only_after: int
    metrics: list[MetricDiff]


def read_map(ref: str) -> dict[str, Any]:
    """A break_even.json from a path, or from git as REV:PATH."""
    path = Path(ref)
    if path.is_file():
        text = path.read_text()
    elif ":" in ref:
        try:
            proc = subprocess.run(["git", "show", ref], capture_output=True, text=True)
        except FileNotFoundError:
            raise ValueError(f"{ref}: not a file, and there is no git here to read it from") from None
        if proc.returncode != 0:
            raise ValueError(f"{ref}: not a file, and git cannot show it ({proc.stderr.strip()})")
        text = proc.stdout
    else:
        raise ValueError(f"{ref}: no such file (give a break_even.json, or REV:PATH from git)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ref} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "planner-break-even":
        raise ValueError(f'{ref} is not a break-even map (no "kind": "planner-break-even")')
    return doc


def column(cell: dict[str, Any]) -> str:
    """The cell's SLO column: its SLO scale where the map has one, else its absolute SLO."""
    scale = cell.get("scale")
    if scale is None:
        return str(cell["slo_label"])
    return scale_label(tuple(scale) if isinstance(scale, list) else scale)


def _cells(doc: dict[str, Any]) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    return {(c["model"], c["workload"], int(c["gpus"]), column(c)): c for c in doc["cells"]}


def _sources(doc: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["provenance"]["source"] for m in doc["models"]}


def diff_maps(before: dict[str, Any], after: dict[str, Any]) -> list[ModelDiff]:
    a, b = _cells(before), _cells(after)
    src_a, src_b = _sources(before), _sources(after)
    out = []
    for model in [m for m in src_b if m in src_a]:
        keys = [k for k in b if k[0] == model and k in a]  # in the later map's order
        metrics = []
        for field, name in METRICS:
            flips, shifts = [], []
            for k in keys:
                x, y = a[k][field], b[k][field]
                if verdict(x) != verdict(y):
                    flips.append(Flip(*k, name, x, y))
                if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
                    shifts.append(y - x)
            wins = [sum(verdict(m[k][field]) == "P/D" for k in keys) for m in (a, b)]
            metrics.append(MetricDiff(name, len(keys), wins[0], wins[1], flips, shifts))
        only_a = sum(1 for k in a if k[0] == model and k not in b)
        only_b = sum(1 for k in b if k[0] == model and k not in a)
        out.append(ModelDiff(model, src_a[model], src_b[model], only_a, only_b, metrics))
    return out


def _margin(m: float | None) -> str:
    """A margin as the map's tables write it (break_even_report.pct), 'neither' where no setup sustains."""
    return "neither" if m is None else pct(m)


def diff_markdown(
    before_ref: str, after_ref: str, after: dict[str, Any], diffs: Sequence[ModelDiff], most: int = 40
) -> str:
    lines = [
        f"# Break-even maps compared: `{before_ref}` -> `{after_ref}`",
        "",
        "Cells matched by model, workload, GPU count and SLO column. A flip: the cell's verdict (P/D pays, "
        "aggregated does, or neither sustains the SLO) changed. Marginal: both margins within "
        f"+-{TOLERANCE:.0%}, inside the planner's stated error (not a verdict either way). Shift: after - "
        "before margin, where both are finite.",
        "",
    ]
    if any("scale" in c for c in after["cells"]):
        lines += [
            "SLO columns are scales of each profile's unloaded latency: where a profile changed, the same "
            "column may be other milliseconds before and after (`unloaded` in each break_even.json).",
            "",
        ]
    for d in diffs:
        src = (
            d.source_before if d.source_before == d.source_after else f"{d.source_before} -> {d.source_after}"
        )
        lines += [f"## {d.model} (profile: {src})", ""]
        rows = []
        for m in d.metrics:
            to_pd = sum(verdict(f.after) == "P/D" for f in m.flips)
            med = f"{100 * float(np.median(np.abs(m.shifts))):.0f} pts" if m.shifts else "-"
            marginal = sum(f.marginal for f in m.flips)
            rows.append([m.metric, str(m.cells), f"{m.wins_before} -> {m.wins_after}", str(len(m.flips)),
                         str(to_pd), str(len(m.flips) - to_pd), str(marginal), med])  # fmt: skip
        lines += md_table(
            ["metric", "cells", "P/D pays", "flips", "to P/D", "away from P/D", "marginal", "median |shift|"],
            rows,
        )
        if d.only_before or d.only_after:
            lines += [
                "",
                f"Cells in one map only: {d.only_before} before, {d.only_after} after (not compared).",
            ]
        flips = [f for m in d.metrics for f in m.flips]
        if flips:
            lines += ["", "Flips:", ""]
            body = [[f.metric, f.workload, str(f.gpus), f.column, _margin(f.before), _margin(f.after),
                     "yes" if f.marginal else ""] for f in flips[:most]]  # fmt: skip
            lines += md_table(["metric", "workload", "GPUs", "SLO", "before", "after", "marginal"], body)
            if len(flips) > most:
                lines.append(f"... {len(flips) - most} more flips (raise --most)")
        lines.append("")
    return "\n".join(lines)


def add_break_even_diff_parser(sub: Any) -> None:
    p = sub.add_parser("break-even-diff", help="two break-even maps compared cell by cell",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("before", help="break_even.json, or REV:PATH in git")
    p.add_argument("after", help="break_even.json, or REV:PATH in git")
    p.add_argument("--out", type=Path, default=None, help="write the comparison here (markdown)")
    p.add_argument("--most", type=int, default=40, help="flips listed per model")


def cmd_break_even_diff(args: argparse.Namespace) -> int:
    after = read_map(args.after)
    diffs = diff_maps(read_map(args.before), after)
    if not diffs:
        raise ValueError(f"{args.before} and {args.after} share no model: nothing to compare")
    text = diff_markdown(args.before, args.after, after, diffs, args.most)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    print(text)
    return 0

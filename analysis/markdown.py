"""Markdown cells and tables shared by every report the analysis writes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from analysis.runs import NA
from analysis.tables import Value


def fmt(value: Value | str) -> str:
    """A cell: numbers to 4 significant digits (no exponent for ordinary sizes), n/a with its reason."""
    if value is None:
        return "n/a"
    if isinstance(value, NA | str):
        return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    if math.isinf(v):
        return "inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.3g}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table's lines; `|` inside a cell is escaped."""

    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(esc, r)) + " |" for r in rows]


def plots_and_notes(plots: Sequence[tuple[str, str]], notes: Sequence[str]) -> list[str]:
    """A report's closing sections: each plot (title, file) under its heading, then the notes."""
    out: list[str] = []
    if plots:
        out += ["## Plots", ""]
        for title, file in plots:
            out += [f"### {title}", "", f"![{title}]({file})", ""]
    if notes:
        out += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return out

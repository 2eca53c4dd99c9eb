"""A comparison as text: report.md (markdown, with its plots referenced) and the terminal tables (rich).

Numbers are shown to 4 significant digits (no exponent for ordinary sizes); values that do not exist read
"n/a (reason)"; the better run of each row is bold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.comparability import hardware, model_name, serving_stack
from analysis.markdown import fmt, md_table, plots_and_notes
from analysis.runs import Run
from analysis.server_report import server_sections
from analysis.tables import Comparison, Group, Row, path_rows, run_status, stage_rows, sweep_rows

REPORT_FILE = "report.md"
SWEEP_HEADER = (
    "run",
    "offered",
    "achieved (req/s)",
    "TTFT p50 (ms)",
    "TTFT p99 (ms)",
    "TPOT p50 (ms)",
    "E2E p50 (ms)",
    "goodput (req/s)",
    "J/request",
    "complete",
)


def fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.3f}"


def slo_text(slo: dict[str, float] | None) -> str:
    return ", ".join(f"{k} ≤ {v:g} ms" for k, v in slo.items()) if slo else "none"


def _header_label(run: Run) -> str:
    return run.label if run.complete else f"{run.label} (INCOMPLETE)"


def group_columns(group: Group) -> list[str]:
    """Column titles: metric, one per run, one ratio per non-baseline run, better."""
    base = group.runs[group.baseline].label
    cols = ["metric", *(_header_label(r) for r in group.runs)]
    cols += [f"{r.label}/{base}" for i, r in enumerate(group.runs) if i != group.baseline]
    return [*cols, "better"]


def group_cells(group: Group, row: Row) -> list[str]:
    cells = [row.title, *(fmt(v) for v in row.values)]
    cells += [fmt_ratio(row.ratios[i]) for i in range(len(group.runs)) if i != group.baseline]
    return [*cells, group.verdict(row)]


def sweep_table(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    rows = [
        [
            r.run,
            r.offered,
            *map(
                fmt,
                (r.achieved_rps, r.ttft_p50, r.ttft_p99, r.tpot_p50, r.e2e_p50, r.goodput, r.j_per_request),
            ),
            "yes" if r.complete else "NO",
        ]
        for r in sweep_rows(runs)
    ]
    return list(SWEEP_HEADER), rows


# ---------------------------------------------------------------- markdown


def _md_row(group: Group, row: Row) -> list[str]:
    cells = group_cells(group, row)
    if group.verdict(row) != "tie":
        for i in row.best:
            cells[1 + i] = f"**{cells[1 + i]}**"
    return cells


def _runs_table(cmp: Comparison) -> list[str]:
    return md_table(
        ["run", "setup", "offered load", "model", "engine", "hardware", "started", "status", "result"],
        [
            [
                r.label,
                r.setup_name,
                r.load_text,
                str(model_name(r)),
                serving_stack(r),
                hardware(r),
                r.metadata.start_iso,
                run_status(r),
                str(r.path),
            ]
            for r in cmp.runs
        ],
    )


def render_markdown(
    cmp: Comparison, plots: Sequence[tuple[str, str]] = (), plot_notes: Sequence[str] = ()
) -> str:
    """report.md: runs, warnings, one table per load, TTFT split, sweep table, the server side, plots,
    notes."""
    out = ["# Disaggregated vs traditional serving: comparison", ""]
    out += [f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %z')} by compare_performance.py.", ""]
    if cmp.forced:
        forced = "; ".join(cmp.differences)
        out += [f"> **FORCED comparison (--force)**: these runs are not comparable: {forced}.", ""]
    for run in cmp.runs:
        if not run.complete:
            out += [f"> **{run.label} is INCOMPLETE** (status {run.status}); see the notes.", ""]
        for warning in run.result.warnings:  # the runner's: prefix cache reuse, client-shaped timing
            out += [f"> **{run.label}**: warning: {warning}", ""]
    out += ["## Runs", "", *_runs_table(cmp)]
    origin = "given with --slo" if cmp.slo_given else "as measured"
    out += [
        "",
        f"Goodput SLOs ({origin}): {slo_text(cmp.slo)}. Summaries are recomputed from the records. "
        "Ratios are run/baseline; *better*: lower latency and energy, higher throughput and goodput; "
        "rows without a verdict are context. Energy per request divides by completed requests.",
        "",
    ]
    for group in cmp.groups:
        out += [f"## Offered load {group.load_text}", ""]
        out += md_table(group_columns(group), [_md_row(group, row) for row in group.rows])
        out.append("")
    split = [(r, rows) for r in cmp.runs if (rows := stage_rows(r))]
    if split:
        out += ["## TTFT split from the proxy's stage timings", ""]
        for run, rows in split:
            out += [f"**{run.label}** (TTFT mean {fmt(run.summary.ttft_ms.mean)} ms)", ""]
            out += md_table(
                ["part", "mean (ms)", "p50 (ms)", "p99 (ms)", "share of mean (%)"],
                [[name, fmt(m), fmt(p50), fmt(p99), fmt(share)] for name, m, p50, p99, share in rows],
            )
            out.append("")
    by_path = path_rows(cmp.runs)
    if by_path:
        out += ["## Requests by path (the proxy's policy: split = P then D, local = D alone)", ""]
        out += md_table(
            ["run", "path", "requests", "TTFT p50 (ms)", "TTFT p99 (ms)", "TPOT p50 (ms)", "E2E p50 (ms)",
             "prompt tokens (mean)"],
            [[run, path, str(n), *(fmt(v) for v in vals)] for run, path, n, *vals in by_path],
        )  # fmt: skip
        out.append("")
    if cmp.sweep:
        out += ["## Load sweep", "", *md_table(*sweep_table(cmp.runs)), ""]

    out += server_sections(cmp.runs)
    out += plots_and_notes(plots, [*cmp.notes, *plot_notes])
    return "\n".join(out)


def write_report(
    cmp: Comparison,
    out_dir: str | Path,
    plots: Sequence[tuple[str, str]] = (),
    plot_notes: Sequence[str] = (),
) -> Path:
    """Write report.md into `out_dir` (plots are referenced by file name, next to it)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    path.write_text(render_markdown(cmp, plots, plot_notes), encoding="utf-8")
    return path


# ---------------------------------------------------------------- terminal


def render_terminal(cmp: Comparison, console: Any = None) -> None:
    """Print the tables with rich (better values in bold green, incomplete runs in red)."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: wide enough for two runs and their ratio
            console = Console(width=160)
    if cmp.forced:
        console.print(f"[bold yellow]FORCED comparison:[/] {'; '.join(cmp.differences)}")
    console.print(f"Goodput SLOs: {slo_text(cmp.slo)}")
    for group in cmp.groups:
        table = Table(title=f"Offered load {group.load_text}", show_lines=False)
        for j, col in enumerate(group_columns(group)):
            run_col = 1 <= j <= len(group.runs)
            style = "red" if run_col and not group.runs[j - 1].complete else None
            table.add_column(col, justify="left" if j == 0 else "right", header_style=style)
        section = None
        for row in group.rows:
            if row.section != section:
                if section is not None:
                    table.add_section()
                section = row.section
            cells = group_cells(group, row)
            if group.verdict(row) != "tie":
                for i in row.best:
                    cells[1 + i] = f"[bold green]{cells[1 + i]}[/]"
            table.add_row(*cells)
        console.print(table)
    for run in cmp.runs:
        rows = stage_rows(run)
        if rows:
            table = Table(title=f"TTFT split: {run.label}")
            for col in ("part", "mean ms", "p50 ms", "p99 ms", "share %"):
                table.add_column(col, justify="left" if col == "part" else "right")
            for name, m, p50, p99, share in rows:
                table.add_row(name, fmt(m), fmt(p50), fmt(p99), fmt(share))
            console.print(table)
    if cmp.sweep:
        header, rows = sweep_table(cmp.runs)
        table = Table(title="Load sweep")
        for col in header:
            table.add_column(col, justify="left" if col == "run" else "right")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    for note in cmp.notes:
        console.print(f"[yellow]note:[/] {note}")

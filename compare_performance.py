#!/usr/bin/env python3
"""Compare traditional and disaggregated runs: a side-by-side table, report.md and plots.

Examples:
  python compare_performance.py                          # newest traditional vs newest disagg under results/
  python compare_performance.py results/runs/A results/runs/B --slo ttft=1000,tpot=50
  python compare_performance.py results/runs/*-rate*     # a rate sweep: adds latency-vs-load and Pareto plots

RESULT is a result.json or a run directory. Runs whose workload, model or hardware differ are refused
(exit 2) unless --force. Goodput is recomputed from the records (for --slo when given). Writes
OUTPUT_DIR/report.md and PNG plots next to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.render import render_terminal, write_report
from analysis.runs import CompareError, default_result_paths, load_runs
from analysis.tables import build_comparison
from experiments.cli_errors import OneLineErrorParser
from experiments.slo import parse_slo


def _slo(text: str) -> dict[str, float]:
    try:
        return parse_slo(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "results",
        nargs="*",
        metavar="RESULT",
        help="result.json files or run directories (default: the newest traditional and disagg results)",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="where to look for the newest results when no RESULT is given (searched recursively)",
    )
    p.add_argument(
        "--output-dir", type=Path, default=Path("results/report"), help="where report.md and plots go"
    )
    p.add_argument(
        "--slo", type=_slo, default=None, help="goodput SLOs in ms, e.g. ttft=1000,tpot=50,e2e=20000"
    )
    p.add_argument(
        "--force", action="store_true", help="compare runs even if workload, model or hardware differ"
    )
    p.add_argument("--no-plots", action="store_true", help="write report.md without plots")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths = args.results or default_result_paths(args.results_dir)
        runs = load_runs(paths, args.slo)
        cmp = build_comparison(runs, args.slo, force=args.force)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cmp.forced:
        print(
            f"warning: forced comparison of runs that differ: {'; '.join(cmp.differences)}", file=sys.stderr
        )
    plots: list[tuple[str, str]] = []
    plot_notes: list[str] = []
    try:
        if not args.no_plots:
            from analysis.plots import make_plots

            plots, plot_notes = make_plots(cmp, args.output_dir)
        report = write_report(cmp, args.output_dir, plots, plot_notes)
    except OSError as exc:
        print(f"error: cannot write the report to {args.output_dir}: {exc}", file=sys.stderr)
        return 2
    render_terminal(cmp)
    for note in plot_notes:
        print(f"note: {note}")
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

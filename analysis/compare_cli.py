#!/usr/bin/env python3
"""Compare traditional and disaggregated runs: a side-by-side table, report.md and plots.

Examples:
  python compare_performance.py                          # newest traditional vs newest disagg under results/
  python compare_performance.py results/runs/A results/runs/B --slo ttft=1000,tpot=50
  python compare_performance.py results/runs/*-rate*     # a rate sweep: adds latency-vs-load and Pareto plots
  python compare_performance.py --frontier results/h200x2/frontier/prefill-heavy --output-dir DIR
      # SLO frontier of one sweep per setup: DIR/frontier.md and frontier_*.png

RESULT is a result.json or a run directory. Runs whose workload, model or hardware differ are refused
(exit 2) unless --force, and so is a sweep whose runs mix serving setups. Goodput is recomputed from the
records (for --slo when given). Writes OUTPUT_DIR/report.md and PNG plots next to it; when the runs hold
rate sweeps of 2+ setups, also the SLO frontier (frontier.md, for --slo-grid and --attainment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.frontier import DEFAULT_ATTAINMENT, Frontier, SloGrid, build_frontier
from analysis.frontier_render import print_frontier, write_frontier
from analysis.render import render_terminal, write_report
from analysis.runs import CompareError, Run, default_result_paths, find_results, load_runs
from analysis.setup_sweeps import check_sweep_setups, holds_setup_sweeps
from analysis.tables import build_comparison
from experiments.slo import parse_slo
from testbed.cli_errors import OneLineErrorParser, arg_type


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a share such as 0.9") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share in (0, 1]; give e.g. 0.9 for 90%")
    return value


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
        "--slo",
        type=arg_type(parse_slo),
        default=None,
        help="goodput SLOs in ms, e.g. ttft=1000,tpot=50,e2e=20000",
    )
    p.add_argument(
        "--force", action="store_true", help="compare runs even if workload, model or hardware differ"
    )
    p.add_argument("--no-plots", action="store_true", help="write report.md without plots")
    p.add_argument(
        "--frontier",
        action="append",
        type=Path,
        metavar="DIR",
        help="SLO frontier of the runs under DIR (searched recursively; one workload shape, one sweep per "
        "setup): writes OUTPUT_DIR/frontier.md and frontier_*.png; may be given several times",
    )
    p.add_argument(
        "--slo-grid",
        type=arg_type(SloGrid.parse),
        default=SloGrid(),
        help="frontier SLO cells in ms: ttft=250,500,1000,2000:tpot=10,15,25,50 (the default)",
    )
    p.add_argument(
        "--attainment",
        type=_level,
        default=DEFAULT_ATTAINMENT,
        help="share of requests that must meet a cell's bounds (default 0.9)",
    )
    return p


def frontier_report(runs: list[Run], args: argparse.Namespace) -> tuple[Frontier, Path]:
    """Build and write the SLO frontier of `runs` (frontier.md and its plots); CompareError when they
    are not sweeps of one workload shape."""
    frontier = build_frontier(runs, args.slo_grid, args.attainment, force=args.force)
    plots: list[tuple[str, str]] = []
    notes: list[str] = []
    if not args.no_plots:
        from analysis.frontier_plots import make_frontier_plots

        plots, notes = make_frontier_plots(frontier, args.output_dir)
    return frontier, write_frontier(frontier, args.output_dir, plots, notes)


def print_frontier_notes(frontier: Frontier, path: Path) -> None:
    print_frontier(frontier)
    for note in frontier.notes:
        print(f"note: {note}")
    print(f"frontier: {path}")


def frontier_main(args: argparse.Namespace) -> int:
    paths = [p for d in args.frontier for p in find_results(d)]
    missing = [str(d) for d in args.frontier if not find_results(d)]
    try:
        if missing:
            raise CompareError(f"no results under {', '.join(missing)}; pass directories holding run dirs")
        frontier, path = frontier_report(load_runs([*paths, *args.results], args.slo), args)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write the frontier to {args.output_dir}: {exc}", file=sys.stderr)
        return 2
    print_frontier_notes(frontier, path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frontier:
        return frontier_main(args)
    try:
        paths = args.results or default_result_paths(args.results_dir)
        runs = load_runs(paths, args.slo)
        mixed = check_sweep_setups(runs, force=args.force).warnings
        cmp = build_comparison(runs, args.slo, force=args.force)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cmp.forced:
        print(
            f"warning: forced comparison of runs that differ: {'; '.join(cmp.differences)}", file=sys.stderr
        )
    for warning in mixed:
        print(f"warning: forced comparison of a sweep that mixes setups: {warning}", file=sys.stderr)
    plots: list[tuple[str, str]] = []
    plot_notes: list[str] = [f"sweep mixes setups (--force): {w}" for w in mixed]
    frontier = None
    try:
        if holds_setup_sweeps(runs):
            try:
                frontier = frontier_report(runs, args)
                plot_notes.append(f"SLO frontier of these sweeps: {frontier[1].name}")
            except CompareError as exc:
                plot_notes.append(f"no SLO frontier: {exc}")
        if not args.no_plots:
            from analysis.plots import make_plots

            plots, skipped = make_plots(cmp, args.output_dir)
            plot_notes += skipped
        report = write_report(cmp, args.output_dir, plots, plot_notes)
    except OSError as exc:
        print(f"error: cannot write the report to {args.output_dir}: {exc}", file=sys.stderr)
        return 2
    render_terminal(cmp)
    for note in plot_notes:
        print(f"note: {note}")
    print(f"report: {report}")
    if frontier is not None:
        print_frontier_notes(*frontier)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo's GPU half: render the committed 2 x H200 measurements (results/h200x2/frontier) with the
analysis code compare_performance.py runs, so a machine without a GPU shows real energy plots.

Writes, under OUT (the demo's results/demo/h200x2/):
    index.md                what the testbed is for, headline numbers, links
    <shape>-rate<R>/        one load, every setup: report.md, power timelines, energy bars, CDFs
    frontier-<shape>/       every load, every setup: report.md, latency vs load, energy vs latency
Reads only result files (seconds); needs no GPU and no vLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.comparability import model_name
from analysis.markdown import fmt
from analysis.plots import PLOTS, make_plots, save_figure
from analysis.render import write_report
from analysis.runs import CompareError, Run, find_results, load_results, runs_from_results
from analysis.tables import build_comparison, sweep_rows
from experiments.schema import RunResult

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "results" / "h200x2" / "frontier"
SLO = {"ttft": 1000.0, "tpot": 50.0}  # the 2 x H200 campaigns' goodput SLO (results/h200x2/README.md)
POINT = ("prefill-heavy", 12.0)  # the single-load comparison: every setup keeps up, their costs differ
SWEEP_PLOTS = ("latency_vs_load", "pareto")  # the per-run plots of 18 runs would not be readable
HEADLINE = ("setup", "TTFT p99 (ms)", "TPOT p50 (ms)", "goodput (req/s)", "J/request, both GPUs")


@dataclass(frozen=True)
class Rendered:
    """One report the demo wrote."""

    name: str  # its directory under OUT
    title: str
    report: Path
    runs: list[Run]
    plots: list[str]  # PNG file names next to the report


def load_shapes(source: Path = SOURCE) -> dict[str, list[RunResult]]:
    """The committed runs by workload shape (the directories of `source` that hold results)."""
    shapes = {}
    dirs = sorted(p for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
    for shape in dirs:
        if paths := find_results(shape):
            shapes[shape.name] = load_results(paths)
    if not shapes:
        raise CompareError(
            f"no results under {source}; the demo renders the committed runs: git checkout -- {source}"
        )
    return shapes


def render_point(shape: str, results: Sequence[RunResult], rate: float, out: Path) -> Rendered:
    """Every setup at one offered load, with every plot compare_performance.py draws."""
    chosen = [r for r in results if r.metadata.config.offered_rate == rate]
    if not chosen:
        raise CompareError(f"no {shape} run at {rate:g} req/s under {SOURCE}")
    runs = runs_from_results(chosen, SLO)
    cmp = build_comparison(runs, SLO)
    plots, notes = make_plots(cmp, out)
    report = write_report(cmp, out, plots, notes)
    title = f"{shape} ({_shape_text(runs[0])}) at {rate:g} req/s"
    return Rendered(out.name, title, report, runs, [file for _, file in plots])


def render_sweep(shape: str, results: Sequence[RunResult], out: Path) -> Rendered:
    """Every setup at every load: the tables and the two load-curve plots."""
    runs = runs_from_results(results, SLO)
    cmp = build_comparison(runs, SLO)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for stem, title, make in PLOTS:
        if stem in SWEEP_PLOTS and not isinstance(fig := make(runs), str):
            save_figure(fig, out / f"{stem}.png")
            plots.append((title, f"{stem}.png"))
    note = "Per-run plots (power timelines, energy bars, CDFs) are in the single-load report."
    report = write_report(cmp, out, plots, [note])
    title = f"{shape} ({_shape_text(runs[0])}), load sweep"
    return Rendered(out.name, title, report, runs, [file for _, file in plots])


def _shape_text(run: Run) -> str:
    w = run.config.workload
    return f"{w.input_len} -> {w.output_len} tokens"


def headline(runs: Sequence[Run]) -> list[list[str]]:
    """HEADLINE rows, one per run."""
    return [
        [row.run, fmt(row.ttft_p99), fmt(row.tpot_p50), fmt(row.goodput), fmt(row.j_per_request)]
        for row in sweep_rows(runs)
    ]


def _testbed(run: Run) -> str:
    gpus = run.metadata.gpu_inventory.gpus
    names = sorted({str(g.name) for g in gpus}) or ["unknown GPU"]
    setup = run.metadata.serving_setup
    vllm = ", ".join(setup.vllm_versions) if setup is not None and setup.vllm_versions else "unknown"
    return (
        f"{len(gpus)} x {' / '.join(names)}, vLLM {vllm}, model {model_name(run)} (dummy weights), "
        f"{run.config.workload.num_requests} requests per point, {run.config.arrival.kind} arrivals"
    )


def write_index(point: Rendered, sweeps: Sequence[Rendered], out: Path) -> Path:
    """index.md: the question, the testbed, the single-load headline, links to every report."""
    rows = headline(point.runs)
    lines = [
        "# What the testbed is for: measured 2 x H200 results",
        "",
        "Does splitting prefill and decode onto separate GPUs (1P1D, the KV cache moved between them) beat "
        "one instance, or the same two GPUs as independent replicas, in latency and in joules per request? "
        "These are real measurements, committed under `results/h200x2/frontier/`, rendered by the demo "
        "with compare_performance.py's code (no GPU needed).",
        "",
        f"Testbed: {_testbed(point.runs[0])}. Goodput SLO: TTFT <= {SLO['ttft']:g} ms, "
        f"TPOT <= {SLO['tpot']:g} ms. Energy is NVML's counter over each run's window, both GPUs counted "
        "in every setup (one instance leaves the second GPU idle).",
        "",
        f"## {point.title}: [report]({point.name}/report.md)",
        "",
        "| " + " | ".join(HEADLINE) + " |",
        "|" + "---|" * len(HEADLINE),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        *(f"![{p}]({point.name}/{p})" for p in point.plots if p in ("power_timeline.png", "energy_bars.png")),
        "",
        "## Load sweeps",
        "",
    ]
    for sweep in sweeps:
        lines += [f"### {sweep.title}: [report]({sweep.name}/report.md)", ""]
        lines += [*(f"![{p}]({sweep.name}/{p})" for p in sweep.plots), ""]
    path = out / "index.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def render_h200x2(out: Path, source: Path = SOURCE) -> tuple[Path, Rendered, list[Rendered]]:
    """Render the point and one sweep per shape into `out`; returns (index.md, point, sweeps)."""
    shapes = load_shapes(source)
    shape, rate = POINT
    if shape not in shapes:
        raise CompareError(f"no {shape} runs under {source}")
    point = render_point(shape, shapes[shape], rate, out / f"{shape}-rate{rate:g}")
    sweeps = [render_sweep(name, results, out / f"frontier-{name}") for name, results in shapes.items()]
    return write_index(point, sweeps, out), point, sweeps


def console_summary(index: Path, point: Rendered, sweeps: Sequence[Rendered]) -> str:
    """What the demo prints: the single-load headline table and where every report went."""
    rows = [list(HEADLINE), *headline(point.runs)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADLINE))]
    table = [
        "  "
        + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(
        [
            f"Measured on 2 x H200 (committed results, rendered here): {point.title}",
            *table,
            f"  overview:   {index}",
            f"  one load:   {point.report} (power timelines, energy bars)",
            *(f"  load sweep: {s.report} (latency vs load, energy vs latency)" for s in sweeps),
        ]
    )

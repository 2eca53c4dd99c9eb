"""The comparison report's plots (matplotlib `Figure` objects rendered by Agg: no display needed).

Each `*_figure` function returns a Figure, or a string saying why the plot does not apply (no energy,
not a sweep...); `make_plots` saves the ones that apply as PNGs and collects the reasons as notes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.runs import NA, Run, is_sweep
from analysis.tables import Comparison, sweep_rows
from experiments.schema import GpuEnergy

# By setup kind (`Run.setup_kind`: a result without a recorded setup takes its mode's), so the colours of
# old and new reports agree.
KIND_COLORS = {"single": "tab:blue", "xpyd": "tab:orange", "replicas": "tab:green"}
GPU_COLORS = ("tab:purple", "tab:red", "tab:cyan", "tab:olive", "tab:brown", "tab:pink", "tab:gray")
DPI = 110

Plot = Figure | str


def run_colors(runs: Sequence[Run]) -> list[str]:
    """One color per run: by setup kind when each kind has one run, else the tab10 cycle."""
    kinds = [r.setup_kind for r in runs]
    if len(set(kinds)) == len(kinds):
        return [KIND_COLORS.get(k, f"C{i}") for i, k in enumerate(kinds)]
    return [f"C{i % 10}" for i in range(len(runs))]


def setup_colors(runs: Sequence[Run]) -> dict[str, str]:
    """One color per setup (by kind while each kind has one setup, else the tab10 cycle)."""
    setups = {r.setup_name: r.setup_kind for r in runs}
    kinds = list(setups.values())
    if len(set(kinds)) == len(kinds):
        return {name: KIND_COLORS.get(kind, f"C{i}") for i, (name, kind) in enumerate(setups.items())}
    return {name: f"C{i % 10}" for i, name in enumerate(setups)}


def _legend_label(run: Run) -> str:
    return run.label if run.complete else f"{run.label} (incomplete)"


# ---------------------------------------------------------------- latency


def cdf_figure(runs: Sequence[Run], key: str, title: str) -> Plot:
    """Empirical CDF of one per-request metric (`RunResult.arrays()` key, ms) for every run."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    drawn = 0
    for run, color in zip(runs, run_colors(runs), strict=True):
        values = run.result.arrays()[key]
        values = np.sort(values[~np.isnan(values)])
        if values.size == 0:
            continue
        y = np.arange(1, values.size + 1) / values.size
        ax.step(
            np.r_[values[0], values],
            np.r_[0.0, y],
            where="post",
            color=color,
            label=f"{_legend_label(run)} (n={values.size})",
        )
        drawn += 1
    if not drawn:
        return f"{title}: no values in any run"
    ax.set_xlabel(f"{title} (ms)")
    ax.set_ylabel("fraction of requests" if key != "itl_ms" else "fraction of token gaps")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"CDF of {title}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def itl_over_time_figure(runs: Sequence[Run]) -> Plot:
    """Every token gap at its arrival time (s after the run's first measured send), binned medians."""
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    drawn = 0
    for run, color in zip(runs, run_colors(runs), strict=True):
        records = run.result.successes()
        if not records:
            continue
        t0 = min(r.sent_mono_ns for r in records if r.sent_mono_ns is not None)
        times, gaps = [], []
        for r in records:
            chunks = np.asarray(r.chunk_mono_ns, dtype=float)
            if chunks.size > 1:
                times.append((chunks[1:] - t0) / 1e9)
                gaps.append(np.diff(chunks) / 1e6)
        if not times:
            continue
        t, g = np.concatenate(times), np.concatenate(gaps)
        ax.scatter(t, g, s=6, alpha=0.35, color=color, label=_legend_label(run))
        edges = np.linspace(t.min(), t.max() + 1e-9, min(30, max(2, t.size // 5)) + 1)
        idx = np.digitize(t, edges) - 1
        mids = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1) if np.any(idx == i)]
        meds = [np.median(g[idx == i]) for i in range(len(edges) - 1) if np.any(idx == i)]
        ax.plot(mids, meds, color=color, linewidth=1.5)
        drawn += 1
    if not drawn:
        return "ITL over time: no run streamed more than one chunk"
    ax.set_xlabel("time since the first measured request (s)")
    ax.set_ylabel("inter-token latency (ms)")
    ax.set_title("ITL over time (dots: every gap; line: binned median)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------- power and energy


def power_timeline(run: Run) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(epoch ns, {gpu: W}) from the energy section's timeline (None = no sample), or None without one."""
    timeline = run.energy.timeline if run.energy is not None and run.energy_na is None else None
    if timeline is None or not timeline.epoch_ns:
        return None
    t = np.asarray(timeline.epoch_ns, dtype=float)
    series = {}
    for gpu, values in timeline.power_w.items():
        arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        if arr.size == t.size:
            series[str(gpu)] = arr
    return (t, series) if series else None


def _gpu_role(run: Run, gpu: str) -> str:
    entry = run.gpu(int(gpu)) if gpu.isdigit() else None
    return f" ({entry.role})" if entry is not None and entry.role else ""


def power_timeline_figure(runs: Sequence[Run]) -> Plot:
    """One panel per run: power of every GPU over time, request arrivals marked, measured window shaded."""
    timelines = [power_timeline(r) for r in runs]
    if not any(timelines):
        return "power timelines skipped: no run has a power timeline (no energy measured; see the notes)"
    fig = Figure(figsize=(10, 3.2 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    for ax, run, tl in zip(axes, runs, timelines, strict=True):
        ax.set_title(_legend_label(run), loc="left", fontsize="medium")
        if tl is None:
            ax.text(
                0.5,
                0.5,
                f"no power timeline: {run.energy_na or 'not recorded'}",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_axis_off()
            continue
        t, series = tl
        origin = t[0]
        for k, (gpu, watts) in enumerate(sorted(series.items())):
            ax.plot(
                (t - origin) / 1e9,
                watts,
                color=GPU_COLORS[k % len(GPU_COLORS)],
                label=f"GPU {gpu}{_gpu_role(run, gpu)}",
            )
        sends = [r.sent_epoch_ns for r in run.result.measured() if r.sent_epoch_ns is not None]
        if sends:
            x = (np.asarray(sends, dtype=float) - origin) / 1e9
            ax.vlines(
                x,
                0,
                0.08,
                transform=ax.get_xaxis_transform(),
                colors="black",
                linewidth=0.8,
                label="request arrivals",
            )
        window = run.energy.window if run.energy is not None else None
        if window is not None:
            ax.axvspan(
                (window.start_epoch_ns - origin) / 1e9,
                (window.end_epoch_ns - origin) / 1e9,
                color="gray",
                alpha=0.1,
                label="measured window",
            )
        ax.set_ylabel("power (W)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
    axes[-1].set_xlabel("time (s)")
    return fig


def _energy_parts(run: Run, gpu: GpuEnergy, denominator: str) -> tuple[float, float, float] | None:
    """(static, dynamic, total) J per request or token of one GPU; static and dynamic 0 when unsplit."""
    count = getattr(run.summary, denominator)
    total = gpu.energy_j
    if total is None or not count:
        return None
    static, dynamic = gpu.static_j, gpu.dynamic_j
    if static is None or dynamic is None:
        return 0.0, 0.0, total / count
    return static / count, dynamic / count, total / count


def energy_bars_figure(runs: Sequence[Run]) -> Plot:
    """Energy per request and per output token, one bar per GPU and run, static hatched under dynamic."""
    with_energy = [r for r in runs if r.gpus]
    if not with_energy:
        return "energy bars skipped: no run has energy (see the notes)"
    fig = Figure(figsize=(max(7, 2.2 * len(runs) + 3), 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    gpu_ids = sorted({g.index for r in with_energy for g in r.gpus})
    width = 0.8 / len(gpu_ids)
    for ax, denominator, title in (
        (axes[0], "completed", "energy per request (J)"),
        (axes[1], "total_output_tokens", "energy per output token (J)"),
    ):
        labelled: set[str] = set()
        for x, run in enumerate(runs):
            if not run.gpus:
                ax.text(x, 0, "n/a", ha="center", va="bottom", rotation=90, fontsize="small")
                continue
            for k, gid in enumerate(gpu_ids):
                gpu = run.gpu(gid)
                parts = _energy_parts(run, gpu, denominator) if gpu else None
                if parts is None:
                    continue
                static, dynamic, total = parts
                pos = x - 0.4 + width * (k + 0.5)
                color = GPU_COLORS[k % len(GPU_COLORS)]
                name = f"GPU {gid}"
                if static or dynamic:
                    ax.bar(
                        pos,
                        static,
                        width,
                        color=color,
                        alpha=0.45,
                        hatch="//",
                        edgecolor="black",
                        label=None if f"s{gid}" in labelled else f"{name} static",
                    )
                    ax.bar(
                        pos,
                        dynamic,
                        width,
                        bottom=static,
                        color=color,
                        edgecolor="black",
                        label=None if f"d{gid}" in labelled else f"{name} dynamic",
                    )
                    labelled |= {f"s{gid}", f"d{gid}"}
                else:
                    ax.bar(
                        pos,
                        total,
                        width,
                        color=color,
                        edgecolor="black",
                        label=None if f"t{gid}" in labelled else f"{name} (no static/dynamic split)",
                    )
                    labelled.add(f"t{gid}")
                if gpu is not None and gpu.role:
                    ax.text(pos, total, gpu.role, ha="center", va="bottom", fontsize="x-small")
        ax.set_xticks(range(len(runs)), [r.label for r in runs], rotation=20 if len(runs) > 3 else 0)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig


# ---------------------------------------------------------------- sweeps


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats in both x and y (lower is better), sorted by x."""
    points = [(x, y, i) for i, (x, y) in enumerate(zip(xs, ys, strict=True))]
    front = [
        i for x, y, i in points if not any(x2 <= x and y2 <= y and (x2 < x or y2 < y) for x2, y2, _ in points)
    ]
    return sorted(front, key=lambda i: (xs[i], ys[i]))


def _number(value: Any) -> float | None:
    return None if value is None or isinstance(value, NA) else float(value)


def latency_vs_load_figure(runs: Sequence[Run]) -> Plot:
    """TTFT p50/p99 and TPOT p50 against achieved requests/s, one line per serving setup."""
    if not is_sweep(runs):
        return "latency-vs-load and Pareto plots need runs at several rates (a sweep)"
    rows = sweep_rows(runs)
    colors = setup_colors(runs)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_ttft, ax_tpot = fig.subplots(1, 2)
    for setup, color in colors.items():
        pts = sorted(
            (r for r in rows if r.setup == setup and r.achieved_rps is not None),
            key=lambda r: r.achieved_rps or 0.0,
        )
        if not pts:
            continue
        x = [p.achieved_rps for p in pts]
        for ax, key, style, label in (
            (ax_ttft, "ttft_p50", "-o", f"{setup} TTFT p50"),
            (ax_ttft, "ttft_p99", "--^", f"{setup} TTFT p99"),
            (ax_tpot, "tpot_p50", "-o", f"{setup} TPOT p50"),
        ):
            y = [_number(getattr(p, key)) for p in pts]
            ax.plot(x, [np.nan if v is None else v for v in y], style, color=color, label=label)
        for p in pts:
            ax_ttft.annotate(
                p.offered,
                (p.achieved_rps, p.ttft_p50 or 0),
                fontsize="x-small",
                textcoords="offset points",
                xytext=(3, -10),
            )
    for ax, what in ((ax_ttft, "TTFT (ms)"), (ax_tpot, "TPOT (ms)")):
        ax.set_xlabel("achieved requests/s")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    ax_ttft.set_title("TTFT vs load (labels: offered load)")
    ax_tpot.set_title("TPOT vs load")
    return fig


def pareto_figure(runs: Sequence[Run]) -> Plot:
    """J/request against TTFT p99 and against E2E p50; the Pareto front over all runs highlighted."""
    if not is_sweep(runs):
        return "latency-vs-load and Pareto plots need runs at several rates (a sweep)"
    rows = [r for r in sweep_rows(runs) if _number(r.j_per_request) is not None]
    if len(rows) < 2:
        return "energy-vs-latency Pareto plot skipped: fewer than two runs have energy"
    colors = setup_colors(runs)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    for ax, key, name in zip(
        fig.subplots(1, 2), ("ttft_p99", "e2e_p50"), ("TTFT p99 (ms)", "E2E p50 (ms)"), strict=True
    ):
        pts = [r for r in rows if _number(getattr(r, key)) is not None]
        xs = [float(getattr(r, key)) for r in pts]
        ys = [float(r.j_per_request) for r in pts]  # type: ignore[arg-type]
        for setup in dict.fromkeys(r.setup for r in pts):
            sel = [i for i, r in enumerate(pts) if r.setup == setup]
            ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], color=colors[setup], label=setup, zorder=3)
        for i, r in enumerate(pts):
            ax.annotate(
                r.offered, (xs[i], ys[i]), fontsize="x-small", textcoords="offset points", xytext=(4, 4)
            )
        front = pareto_front(xs, ys)
        if front:
            ax.step(
                [xs[i] for i in front],
                [ys[i] for i in front],
                where="post",
                color="black",
                linewidth=1.2,
                label="Pareto front",
            )
            ax.scatter(
                [xs[i] for i in front],
                [ys[i] for i in front],
                s=140,
                facecolors="none",
                edgecolors="black",
                zorder=4,
            )
        ax.set_xlabel(name)
        ax.set_ylabel("energy per request, all GPUs (J)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        ax.set_title(f"energy vs {name.split(' (')[0]} (lower-left is better)")
    return fig


# ---------------------------------------------------------------- saving

PLOTS: tuple[tuple[str, str, Callable[[Sequence[Run]], Plot]], ...] = (
    ("cdf_ttft", "TTFT CDF", lambda runs: cdf_figure(runs, "ttft_ms", "TTFT")),
    ("cdf_itl", "ITL CDF", lambda runs: cdf_figure(runs, "itl_ms", "ITL")),
    ("cdf_e2e", "E2E latency CDF", lambda runs: cdf_figure(runs, "e2el_ms", "E2E latency")),
    ("itl_over_time", "ITL over time", itl_over_time_figure),
    ("power_timeline", "Power timelines with request arrivals", power_timeline_figure),
    ("energy_bars", "Energy per request and per token, by GPU", energy_bars_figure),
    ("latency_vs_load", "Latency vs load", latency_vs_load_figure),
    ("pareto", "Energy vs latency (Pareto)", pareto_figure),
)


def save_figure(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure (for notebooks: IPython.display.Image(data=...))."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def build_figures(runs: Sequence[Run]) -> tuple[dict[str, tuple[str, Figure]], list[str]]:
    """{file stem: (title, figure)} of the plots that apply, and why the others were skipped."""
    figures, notes = {}, []
    for stem, title, make in PLOTS:
        plot = make(runs)
        if isinstance(plot, Figure):
            figures[stem] = (title, plot)
        elif plot not in notes:
            notes.append(plot)
    return figures, notes


def make_plots(
    cmp: Comparison | Sequence[Run], out_dir: str | Path
) -> tuple[list[tuple[str, str]], list[str]]:
    """Save every applicable plot as out_dir/<stem>.png; returns [(title, file name)] and skip notes."""
    runs = cmp.runs if isinstance(cmp, Comparison) else list(cmp)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures, notes = build_figures(runs)
    saved = []
    for stem, (title, fig) in figures.items():
        save_figure(fig, out / f"{stem}.png")
        saved.append((title, f"{stem}.png"))
    return saved, notes

"""The frontier's figures (matplotlib Figures, rendered by Agg): attainment vs rate per SLO cell, the
sustained rate per GPU and per kW across the grid, the winner heatmaps, and energy vs rate."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from analysis.frontier import Frontier, Metric
from analysis.frontier_render import METRIC_TITLE
from analysis.plots import setup_colors

DPI = 100
UNCERTAIN = ("at most", "unknown")


def colors(f: Frontier) -> dict[str, str]:
    return setup_colors([s.points[0].runs[0] for s in f.setups])


def attainment_figure(f: Frontier) -> Figure:
    """One panel per SLO cell: attainment vs offered rate per setup, the level and the sustained rate."""
    nt, np_ = len(f.grid.ttft_ms), len(f.grid.tpot_ms)
    fig = Figure(figsize=(2.9 * np_ + 1, 2.3 * nt + 0.8), layout="constrained")
    axes = fig.subplots(nt, np_, sharex=True, sharey=True, squeeze=False)
    col = colors(f)
    for i, j in f.grid.cells:
        ax = axes[i, j]
        for s in f.setups:
            att = [100 * float(p.attainment[i, j]) for p in s.points]
            ax.plot(s.offered, att, "o-", color=col[s.name], markersize=3, linewidth=1.2, label=s.name)
            c = f.capacity[(s.name, i, j)]
            if c.status == "bracketed" and c.rate is not None:
                ax.plot(c.rate, 100 * f.level, "*", color=col[s.name], markersize=10, markeredgecolor="black")
        ax.axhline(100 * f.level, color="gray", linestyle="--", linewidth=0.8)
        ax.set_title(f"TTFT ≤ {f.grid.ttft_ms[i]:g} ms, TPOT ≤ {f.grid.tpot_ms[j]:g} ms", fontsize="small")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize="small")
    for ax in axes[-1, :]:
        ax.set_xlabel("offered rate, arrived (req/s)", fontsize="small")
    for ax in axes[:, 0]:
        ax.set_ylabel("attainment (%)", fontsize="small")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(f.setups), fontsize="small")
    fig.suptitle(
        f"SLO attainment vs offered rate (dashed: {100 * f.level:g}%; star: interpolated sustained rate)",
        fontsize="medium",
    )
    return fig


def capacity_figure(f: Frontier) -> Figure:
    """Sustained rate per GPU (top) and per kW (bottom) vs the TTFT bound, one panel per TPOT bound.
    Hollow triangles: never saturated (a lower bound); crosses at 0: never met."""
    np_ = len(f.grid.tpot_ms)
    fig = Figure(figsize=(3.2 * np_ + 1, 6.2), layout="constrained")
    axes = fig.subplots(2, np_, sharex=True, squeeze=False)
    col = colors(f)
    x = np.arange(len(f.grid.ttft_ms))
    metrics: tuple[Metric, Metric] = ("per_gpu", "per_kw")
    for row, metric in enumerate(metrics):
        for j in range(np_):
            ax = axes[row, j]
            for s in f.setups:
                caps = [f.capacity[(s.name, i, j)] for i in range(len(x))]
                vals = [c.value(metric) for c in caps]
                y = np.array([np.nan if v is None else v for v in vals])
                ax.plot(x, y, "-", color=col[s.name], linewidth=1.2, label=s.name)
                for k, c in enumerate(caps):
                    marker, face = ("x", col[s.name]) if c.status == "never met" else ("o", col[s.name])
                    if c.lower_bound:
                        marker, face = "^", "none"
                    ax.plot(x[k], y[k], marker, color=col[s.name], markerfacecolor=face, markersize=6)
            ax.set_xticks(x, [f"{t:g}" for t in f.grid.ttft_ms], fontsize="small")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize="small")
            if row == 0:
                ax.set_title(f"TPOT ≤ {f.grid.tpot_ms[j]:g} ms", fontsize="small")
            else:
                ax.set_xlabel("TTFT bound (ms)", fontsize="small")
        axes[row, 0].set_ylabel("req/s per GPU" if metric == "per_gpu" else "req/s per kW", fontsize="small")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(f.setups), fontsize="small")
    fig.suptitle(
        f"Sustained rate at {100 * f.level:g}% attainment (▲ hollow: never saturated, a lower bound; "
        "× at 0: never met)",
        fontsize="medium",
    )
    return fig


def _cell_label(f: Frontier, metric: Metric, i: int, j: int) -> tuple[str, tuple[float, float, float]]:
    """Text and color of one heatmap cell: the leader mixed with white by its margin (x2 = full)."""
    v = f.verdicts[(metric, i, j)]
    if v.leader is None:
        return "none\nmeets it", (0.85, 0.85, 0.85)
    base = np.array(to_rgb(colors(f)[v.leader]))
    margin = 1.0 if v.ratio is None or math.isinf(v.ratio) else min(1.0, math.log(v.ratio) / math.log(2))
    strength = 0.3 + 0.7 * max(0.0, margin)
    rgb = tuple(float(c) for c in (1 - strength) + strength * base)
    name = textwrap.fill(v.leader, 12)
    r = v.ratio
    if v.qualifier in ("alone", "only", "tie") or r is None:
        ratio = {"only": "only one", "tie": "tie"}.get(v.qualifier, "")
    elif v.qualifier == "unknown":
        ratio = f"≥{v.values[0] or 0:.3g} vs ≥{v.values[1] or 0:.3g}?"
    else:
        ratio = {"exact": f"×{r:.2f}", "at least": f"≥×{r:.2f}", "at most": f"≤×{r:.2f}?"}[v.qualifier]
    return f"{name}\n{ratio}", rgb  # type: ignore[return-value]


def winners_figure(f: Frontier) -> Figure:
    """Per GPU and per kW: which setup leads each SLO cell (its color) and its ratio to the runner-up.
    Paler = narrower lead; hatched = the lead is uncertain (the runner-up never saturated)."""
    nt, np_ = len(f.grid.ttft_ms), len(f.grid.tpot_ms)
    fig = Figure(figsize=(2 * (1.35 * np_ + 1.2), 1.0 * nt + 1.9), layout="constrained")
    axes = fig.subplots(1, 2)
    metrics: tuple[Metric, Metric] = ("per_gpu", "per_kw")
    for ax, metric in zip(axes, metrics, strict=True):
        image = np.ones((nt, np_, 3))
        for i, j in f.grid.cells:
            text, rgb = _cell_label(f, metric, i, j)
            image[i, j] = rgb
            ax.text(j, i, text, ha="center", va="center", fontsize="x-small")
            if f.verdicts[(metric, i, j)].qualifier in UNCERTAIN:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="gray"))
        ax.imshow(image, aspect="auto")
        ax.set_xticks(range(np_), [f"{t:g}" for t in f.grid.tpot_ms], fontsize="small")
        ax.set_yticks(range(nt), [f"{t:g}" for t in f.grid.ttft_ms], fontsize="small")
        ax.set_xlabel("TPOT bound (ms)", fontsize="small")
        ax.set_ylabel("TTFT bound (ms)", fontsize="small")
        ax.set_title(METRIC_TITLE[metric].split(" (")[0], fontsize="small")
    legend = [Patch(color=c, label=name) for name, c in colors(f).items()]
    fig.legend(
        handles=legend,
        loc="outside lower center",
        ncols=len(legend),
        fontsize="small",
        title="leader (paler = narrower lead; hatched = uncertain: the runner-up never saturated)",
        title_fontsize="small",
    )
    fig.suptitle(
        f"Winner per SLO cell at {100 * f.level:g}% attainment (ratio: leader / runner-up)", fontsize="medium"
    )
    return fig


def energy_figure(f: Frontier) -> Figure | str:
    """J per request and per output token vs offered rate: total (solid), dynamic (dashed), static
    (dotted)."""
    if all(p.energy_j is None for s in f.setups for p in s.points):
        return "energy vs rate skipped: no run has energy"
    fig = Figure(figsize=(11, 4.3), layout="constrained")
    col = colors(f)
    for ax, denominator, title in zip(
        fig.subplots(1, 2),
        ("request", "token"),
        ("energy per request, all GPUs (J)", "energy per output token, all GPUs (J)"),
        strict=True,
    ):
        for s in f.setups:
            for part, style, what in (
                ("energy_j", "o-", "total"),
                ("dynamic_j", "--", "dynamic"),
                ("static_j", ":", "static"),
            ):
                y = [p.per(part, denominator) for p in s.points]
                ax.plot(
                    s.offered,
                    [np.nan if v is None else v for v in y],
                    style,
                    color=col[s.name],
                    markersize=4,
                    label=f"{s.name} {what}",
                )
        ax.set_xlabel("offered rate, arrived (req/s)")
        ax.set_title(title, fontsize="medium")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="x-small", ncols=len(f.setups))
    return fig


def make_frontier_plots(f: Frontier, out_dir: str | Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Save the figures as out_dir/frontier_*.png; [(title, file)] and notes for those skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = (
        ("frontier_winners", "Winner per SLO cell", winners_figure(f)),
        ("frontier_capacity", "Sustained rate per GPU and per kW across the SLO grid", capacity_figure(f)),
        ("frontier_attainment", "SLO attainment vs offered rate", attainment_figure(f)),
        ("frontier_energy", "Energy per request and per output token vs rate", energy_figure(f)),
    )
    saved, notes = [], []
    for stem, title, fig in figures:
        if isinstance(fig, str):
            notes.append(fig)
            continue
        fig.savefig(out / f"{stem}.png", dpi=DPI)
        saved.append((title, f"{stem}.png"))
    return saved, notes

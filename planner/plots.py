"""Planner plots in the compare report's style (matplotlib `Figure` objects, Agg, saved as PNG).

`attainment_figure`: SLO attainment vs offered rate, one line per setup, the target as a dashed line.
`energy_figure`: predicted J per request vs rate, static part hatched. `goodput_figure`: goodput per
GPU at the SLO for the setups a search kept, J per request written on each bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from planner.outcome import Outcome
from planner.search import SetupResult

DPI = 110


def attainment_figure(series: Mapping[str, Sequence[Outcome]], target: float, slo_text: str) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, outs) in enumerate(series.items()):
        pts = sorted((o.rate, o.attainment) for o in outs if o.rate is not None and o.attainment is not None)
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", color=f"C{i % 10}", label=name)
    ax.axhline(100 * target, color="gray", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("requests meeting the SLO (%)")
    ax.set_ylim(0, 102)
    ax.set_title(f"Predicted SLO attainment ({slo_text})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return fig


def energy_figure(series: Mapping[str, Sequence[Outcome]]) -> Figure | str:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    drawn = 0
    for i, (name, outs) in enumerate(series.items()):
        pts = sorted(
            (o.rate, o.energy.j_per_request, o.energy.static_j_per_request)
            for o in outs
            if o.rate is not None and o.energy.j_per_request is not None
        )
        if not pts:
            continue
        color = f"C{i % 10}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=f"{name} total")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], ":", color=color, label=f"{name} static (idle)")
        drawn += 1
    if not drawn:
        return "energy: the profile has no power model"
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("J per request (all GPUs of the setup)")
    ax.set_title("Predicted energy per request")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def goodput_figure(found: Mapping[int, Sequence[SetupResult]], slo_text: str, target: float) -> Figure:
    rows = [r for gpus in sorted(found) for r in found[gpus]]
    fig = Figure(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    colors = {g: f"C{i % 10}" for i, g in enumerate(sorted(found))}
    x = range(len(rows))
    bars = ax.bar(x, [r.goodput_per_gpu for r in rows], color=[colors[r.setup.gpus] for r in rows])
    for bar, r in zip(bars, rows, strict=True):
        j = r.j_per_request
        label = f"{j:.0f} J" if j is not None else ""
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize="x-small")  # fmt: skip
    ax.set_xticks(list(x), [f"{r.setup.name}\n{r.setup.gpus} GPUs" for r in rows], fontsize="small")
    ax.set_ylabel(f"requests/s per GPU at >= {target:.0%} attainment")
    ax.set_title(f"Predicted goodput per GPU ({slo_text}); J per request on the bars")
    ax.grid(alpha=0.3, axis="y")
    return fig


def save(fig: Figure | str, path: Path) -> str:
    """Write the PNG (or return why there is none); returns a line for the CLI to print."""
    if isinstance(fig, str):
        return f"no plot {path.name}: {fig}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return f"plot: {path}"

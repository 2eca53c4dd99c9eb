"""Power plots and a text report from a power CSV written by `python -m monitor`.

Figures are matplotlib `Figure` objects rendered by Agg (headless); pyplot is only used to show them.

CLI: python -m monitor.plot power.csv --output-dir plots --report report.txt [--no-show]
Python: plot_power_csv("power.csv", "plots") -> list of PNG paths.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from monitor.csv_io import PowerCsv, read_power_csv
from monitor.energy import trapezoid_energy_j

TIME_LABEL = "Time (s)"
POWER_LABEL = "Power (W)"
UTIL_LABEL = "GPU utilization (%)"
TEMP_LABEL = "Temperature (°C)"


def power_series(data: PowerCsv, gpu: int) -> tuple[np.ndarray, str]:
    """The best power column of a GPU: instant power when recorded, else nvmlDeviceGetPowerUsage."""
    instant = data.gpu(gpu, "power_instant")
    if instant is not None and not np.all(np.isnan(instant)):
        return instant, "instant"
    power = data.gpu(gpu, "power")
    assert power is not None  # read_power_csv guarantees gpu_<i>_power
    return power, "power usage"


def _seconds(data: PowerCsv) -> np.ndarray:
    t = data.timestamp
    return t - t[0] if len(t) else t


def _new_figure(show: bool, **kwargs: Any) -> Figure:
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(**kwargs)
    return Figure(**kwargs)


def build_figures(data: PowerCsv, *, show: bool = False) -> dict[str, Figure]:
    """Figures by file stem: power_gpu_<i>, power_all_gpus, utilization_vs_power, temperature."""
    t = _seconds(data)
    figs: dict[str, Figure] = {}
    for gpu in data.gpu_ids:
        power, kind = power_series(data, gpu)
        fig = _new_figure(show, figsize=(10, 4), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(t, power, color="tab:red", lw=1, label=f"GPU {gpu} power ({kind})")
        ax.set(xlabel=TIME_LABEL, ylabel=POWER_LABEL, title=f"GPU {gpu} power")
        util = data.gpu(gpu, "utilization")
        if util is not None and not np.all(np.isnan(util)):
            ax2 = ax.twinx()
            ax2.fill_between(
                t, np.nan_to_num(util), step="post", color="tab:blue", alpha=0.15, label="utilization"
            )
            ax2.set(ylabel=UTIL_LABEL, ylim=(0, 105))
        ax.legend(loc="upper left")
        figs[f"power_gpu_{gpu}"] = fig

    fig = _new_figure(show, figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    total = np.zeros_like(t)
    for gpu in data.gpu_ids:
        power, _ = power_series(data, gpu)
        ax.plot(t, power, lw=1, label=f"GPU {gpu}")
        total = total + power  # NaN where any GPU is missing
    ax.plot(t, total, color="black", lw=1.2, label="total")
    ax.set(xlabel=TIME_LABEL, ylabel=POWER_LABEL, title="Power, all GPUs")
    ax.legend(loc="upper left")
    figs["power_all_gpus"] = fig

    fig = _new_figure(show, figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    for gpu in data.gpu_ids:
        power, _ = power_series(data, gpu)
        util = data.gpu(gpu, "utilization")
        if util is None:
            continue
        ok = ~np.isnan(util) & ~np.isnan(power)
        points = ax.scatter(util[ok], power[ok], s=6, alpha=0.5, label=f"GPU {gpu}")
        if ok.sum() >= 2 and np.ptp(util[ok]) > 0:
            slope, intercept = np.polyfit(util[ok], power[ok], 1)
            xs = np.array([0.0, 100.0])
            ax.plot(xs, slope * xs + intercept, color=points.get_facecolor()[0], lw=1.5,
                    label=f"GPU {gpu} trend: {intercept:.0f} W + {slope:.2f} W/%")  # fmt: skip
    ax.set(xlabel=UTIL_LABEL, ylabel=POWER_LABEL, title="Utilization vs power")
    ax.legend(loc="upper left", fontsize="small")
    figs["utilization_vs_power"] = fig

    fig = _new_figure(show, figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    for gpu in data.gpu_ids:
        temp = data.gpu(gpu, "temperature")
        if temp is not None:
            ax.plot(t, temp, lw=1, label=f"GPU {gpu}")
    ax.set(xlabel=TIME_LABEL, ylabel=TEMP_LABEL, title="GPU temperature")
    ax.legend(loc="upper left")
    figs["temperature"] = fig
    return figs


def plot_power_csv(csv_path: Path | str, out_dir: Path | str, *, show: bool = False) -> list[Path]:
    """Write the power plots of `csv_path` as PNGs into `out_dir`; returns their paths."""
    data = read_power_csv(csv_path)
    if len(data) == 0:
        raise ValueError(f"{csv_path} has a header but no samples; nothing to plot")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    figs = build_figures(data, show=show)
    for stem, fig in figs.items():
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=120)
        paths.append(path)
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return paths


@dataclass
class GpuReport:
    gpu: int
    mean_power_w: float | None
    max_power_w: float | None
    energy_j: float | None
    energy_method: str
    duration_s: float
    samples: int
    missing_samples: int


def _counter_energy_j(counter: np.ndarray) -> tuple[float | None, int]:
    """Sum of positive steps of the counter column (J) and the number of backward steps skipped."""
    c = counter[~np.isnan(counter)]
    if len(c) < 2:
        return None, 0
    steps = np.diff(c)
    return float(steps[steps >= 0].sum()) / 1000, int((steps < 0).sum())


def power_report(data: PowerCsv) -> list[GpuReport]:
    """Per GPU: mean/max power, energy (counter column when present, else integrated), duration."""
    t = data.timestamp
    duration = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    reports = []
    for gpu in data.gpu_ids:
        power, kind = power_series(data, gpu)
        ok = ~np.isnan(power)
        counter = data.gpu(gpu, "energy_mj")
        energy, method = None, "none"
        if counter is not None:
            energy, backward = _counter_energy_j(counter)
            method = "energy_counter" + (f" ({backward} backward steps skipped)" if backward else "")
        if energy is None:
            energy = trapezoid_energy_j((t * 1e9).astype(np.int64), power)
            method = f"integrated {kind}"
        missing = data.gpu(gpu, "missing")
        reports.append(
            GpuReport(
                gpu=gpu,
                mean_power_w=float(power[ok].mean()) if ok.any() else None,
                max_power_w=float(power[ok].max()) if ok.any() else None,
                energy_j=energy,
                energy_method=method,
                duration_s=duration,
                samples=len(t),
                missing_samples=int(np.nansum(missing)) if missing is not None else int((~ok).sum()),
            )
        )
    return reports


def format_report(csv_path: Path | str, reports: list[GpuReport]) -> str:
    """Human-readable report text."""

    def num(x: float | None, unit: str) -> str:
        return "n/a" if x is None else f"{x:.1f} {unit}"

    lines = [f"Power report for {csv_path}"]
    if reports:
        lines.append(f"duration: {reports[0].duration_s:.1f} s, samples: {reports[0].samples}")
    for r in reports:
        lines.append(
            f"GPU {r.gpu}: mean {num(r.mean_power_w, 'W')}, max {num(r.max_power_w, 'W')}, "
            f"energy {num(r.energy_j, 'J')} ({r.energy_method}), missing samples {r.missing_samples}"
        )
    energies = [r.energy_j for r in reports]
    if reports and all(e is not None for e in energies):
        lines.append(f"total energy: {sum(energies):.1f} J")  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m monitor.plot", description="Plot a power CSV and report energy."
    )
    p.add_argument("csv", type=Path, help="CSV written by python -m monitor")
    p.add_argument(
        "--output-dir", type=Path, default=Path("plots"), help="directory for PNGs (default plots)"
    )
    p.add_argument("--report", type=Path, default=None, help="also write the text report to this file")
    p.add_argument(
        "--no-show", action="store_true", help="never open a window (default: open one if a display exists)"
    )
    args = p.parse_args(argv)
    show = not args.no_show and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not show:
        matplotlib.use("Agg")  # headless: figures are only saved
    try:
        data = read_power_csv(args.csv)
        text = format_report(args.csv, power_report(data))
        paths = plot_power_csv(args.csv, args.output_dir, show=show)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")
    print(text, end="")
    print("wrote " + ", ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

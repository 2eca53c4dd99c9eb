"""Power plots and a text report from a power CSV written by `python -m monitor`.

Figures are matplotlib `Figure` objects rendered by Agg (headless); pyplot is only used to show them.
The report (monitor.report) leads with the energy windows the monitor recorded in its JSON (by default
the CSV's path with .json), so that it gives the same joules as `python -m monitor` did.

CLI: python -m monitor.plot power.csv --output-dir plots --report report.txt [--json power.json] [--no-show]
Python: plot_power_csv("power.csv", "plots") -> list of PNG paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from monitor.csv_io import PowerCsv, read_power_csv
from monitor.report import power_series, report_text
from testbed.cli_errors import OneLineErrorParser

TIME_LABEL = "Time (s)"
POWER_LABEL = "Power (W)"
UTIL_LABEL = "GPU utilization (%)"
TEMP_LABEL = "Temperature (°C)"


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


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(prog="python -m monitor.plot", description="Plot a power CSV and report energy.")
    p.add_argument("csv", type=Path, help="CSV written by python -m monitor")
    p.add_argument(
        "--output-dir", type=Path, default=Path("plots"), help="directory for PNGs (default plots)"
    )
    p.add_argument("--report", type=Path, default=None, help="also write the text report to this file")
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="the monitor's JSON with the recorded windows (default: the CSV path with .json, if present)",
    )
    p.add_argument(
        "--no-show", action="store_true", help="never open a window (default: open one if a display exists)"
    )
    args = p.parse_args(argv)
    show = not args.no_show and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not show:
        matplotlib.use("Agg")  # headless: figures are only saved
    try:
        text = report_text(args.csv, args.json)
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

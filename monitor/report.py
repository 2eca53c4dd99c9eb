"""The text report of a power CSV: the monitor's own windows (from its JSON) and the CSV's whole span.

`python -m monitor` measures a window ("run") on the energy counter's steps and writes it into its JSON;
the report prints that window as measured, so the CLI and the report give the same joules for the same
run. It then reports the CSV on its own, from its first to its last sample, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.csv_io import PowerCsv, read_power_csv
from monitor.energy import METHOD_COUNTER, WindowResult, read_window, trapezoid_energy_j, utc_text

_EDGE_SLACK_NS = 1_000_000_000  # a window may start before the first sample by up to this much


def power_series(data: PowerCsv, gpu: int) -> tuple[np.ndarray, str]:
    """The best power column of a GPU: instant power when recorded, else nvmlDeviceGetPowerUsage."""
    instant = data.gpu(gpu, "power_instant")
    if instant is not None and not np.all(np.isnan(instant)):
        return instant, "instant"
    power = data.gpu(gpu, "power")
    assert power is not None  # read_power_csv guarantees gpu_<i>_power
    return power, "power usage"


@dataclass
class GpuReport:
    """One GPU over the whole CSV; the energy covers [energy_start_s, energy_end_s] (epoch s)."""

    gpu: int
    mean_power_w: float | None
    max_power_w: float | None
    energy_j: float | None
    energy_method: str
    energy_start_s: float | None
    energy_end_s: float | None
    samples_start_s: float
    samples_end_s: float
    samples: int
    missing_samples: int

    @property
    def duration_s(self) -> float:
        return self.samples_end_s - self.samples_start_s


def _counter_energy(t: np.ndarray, counter: np.ndarray) -> tuple[float | None, str, float, float]:
    """Sum of the counter's forward steps (J) between its first and last read, a method text, and when
    those reads were (the counter is read at the first and last sample, and sparsely in between)."""
    read = ~np.isnan(counter)
    c, when = counter[read], t[read]
    if len(c) < 2:
        return None, "", 0.0, 0.0
    steps = np.diff(c)
    backward = int((steps < 0).sum())
    method = METHOD_COUNTER + (f", {backward} backward steps skipped" if backward else "")
    return float(steps[steps >= 0].sum()) / 1000, method, float(when[0]), float(when[-1])


def power_report(data: PowerCsv) -> list[GpuReport]:
    """Per GPU over all samples: mean/max power, energy (counter column when present, else integrated)."""
    t = data.timestamp
    reports = []
    for gpu in data.gpu_ids:
        power, kind = power_series(data, gpu)
        ok = ~np.isnan(power)
        counter = data.gpu(gpu, "energy_mj")
        energy, method, start, end = (None, "", 0.0, 0.0) if counter is None else _counter_energy(t, counter)
        if energy is None:
            energy = trapezoid_energy_j((t * 1e9).astype(np.int64), power)
            method = f"integrated {kind}"
            start, end = (float(t[ok][0]), float(t[ok][-1])) if ok.any() else (0.0, 0.0)
        missing = data.gpu(gpu, "missing")
        reports.append(
            GpuReport(
                gpu=gpu,
                mean_power_w=float(power[ok].mean()) if ok.any() else None,
                max_power_w=float(power[ok].max()) if ok.any() else None,
                energy_j=energy,
                energy_method=method,
                energy_start_s=start if energy is not None else None,
                energy_end_s=end if energy is not None else None,
                samples_start_s=float(t[0]) if len(t) else 0.0,
                samples_end_s=float(t[-1]) if len(t) else 0.0,
                samples=len(t),
                missing_samples=int(np.nansum(missing)) if missing is not None else int((~ok).sum()),
            )
        )
    return reports


def load_windows(json_path: Path, data: PowerCsv) -> tuple[list[WindowResult], str | None]:
    """The windows recorded in a monitor JSON that lie within the CSV's samples, and a note on any
    that do not (a JSON from another run) or on a JSON without windows."""
    summary = json.loads(json_path.read_text(encoding="utf-8"))
    raw = summary.get("windows") if isinstance(summary, dict) else None
    if not raw:
        return [], f"{json_path} records no energy window"
    t = data.timestamp
    first_ns, last_ns = int(t[0] * 1e9) - _EDGE_SLACK_NS, int(t[-1] * 1e9) + _EDGE_SLACK_NS
    windows, outside = [], []
    for w in (read_window(d) for d in raw.values()):
        (windows if first_ns <= w.start_epoch_ns and w.end_epoch_ns <= last_ns else outside).append(w)
    note = (
        f"windows {[w.name for w in outside]} in {json_path} lie outside this CSV's samples"
        if outside
        else None
    )
    return windows, note


def _utc(epoch_s: float) -> str:
    return utc_text(round(epoch_s * 1e9))


def format_report(
    csv_path: Path | str,
    reports: list[GpuReport],
    windows: Sequence[WindowResult] = (),
    json_path: Path | None = None,
    note: str | None = None,
) -> str:
    """Human-readable report text: the recorded windows first, then the CSV from first to last sample."""

    def num(x: float | None, unit: str) -> str:
        return "n/a" if x is None else f"{x:.1f} {unit}"

    lines = [f"Power report for {csv_path}"]
    for w in windows:
        lines.append(
            f'window "{w.name}" as measured by the monitor ({json_path}), each GPU from one energy-counter '
            "step to another:"
        )
        lines += [f"  GPU {gpu}: {g.describe()}" for gpu, g in w.gpus.items()]
        if w.total_energy_j is not None:
            lines.append(f"  total: {w.total_energy_j:.1f} J")
    if note:
        lines.append(f"note: {note}")
    t0, t1 = (reports[0].samples_start_s, reports[0].samples_end_s) if reports else (0.0, 0.0)
    if reports:
        lines.append(
            f"all samples in the CSV, first to last: {reports[0].samples} from {_utc(t0)} to {_utc(t1)} "
            f"({t1 - t0:.3f} s)"
        )
    for r in reports:
        a, b = r.energy_start_s, r.energy_end_s
        same_span = a is None or b is None or (abs(a - t0) < 1e-3 and abs(b - t1) < 1e-3)
        span = "" if same_span else f", from {_utc(a)} to {_utc(b)} ({b - a:.3f} s)"  # type: ignore[operator]
        lines.append(
            f"  GPU {r.gpu}: mean {num(r.mean_power_w, 'W')}, max {num(r.max_power_w, 'W')}, "
            f"energy {num(r.energy_j, 'J')} ({r.energy_method}{span}), missing samples {r.missing_samples}"
        )
    energies = [r.energy_j for r in reports]
    if reports and all(e is not None for e in energies):
        lines.append(f"  total energy: {sum(energies):.1f} J")  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def report_text(csv_path: Path, json_path: Path | None) -> str:
    """The report of `csv_path`, with the windows recorded in `json_path` (None: the CSV's .json if any)."""
    data = read_power_csv(csv_path)
    if len(data) == 0:
        raise ValueError(f"{csv_path} has a header but no samples; nothing to report")
    explicit = json_path is not None
    json_path = json_path or csv_path.with_suffix(".json")
    windows, note = [], None
    if explicit or json_path.exists():
        try:
            windows, note = load_windows(json_path, data)
        except (OSError, ValueError, KeyError, TypeError) as err:
            if explicit:
                raise ValueError(f"cannot read the windows in {json_path}: {err}") from err
            note = f"{json_path} is not a monitor JSON ({err}); only the CSV is reported"
    else:
        note = f"no {json_path} beside the CSV: no recorded window, only the CSV is reported"
    return format_report(csv_path, power_report(data), windows, json_path, note)

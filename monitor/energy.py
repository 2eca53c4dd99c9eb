"""Energy-window results and the arithmetic behind them (counter deltas with wrap-around, trapezoids)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np

METHOD_COUNTER = "energy_counter"
METHOD_INTEGRATED = "integrated_power"


def counter_delta_mj(values: Sequence[int], wrap_mj: int) -> int:
    """Energy between the first and last of successive counter reads, each step taken modulo `wrap_mj`.

    A wrap between two reads is handled; more than one wrap between two successive reads cannot be seen,
    which is why the sampler's own counter reads are fed in between the window's boundary reads.
    """
    return sum((b - a) % wrap_mj for a, b in itertools.pairwise(values))


def trapezoid_energy_j(times_ns: np.ndarray, power_w: np.ndarray) -> float | None:
    """Integral of power over time (trapezoids) in joules, ignoring NaN points; None under two points."""
    ok = ~np.isnan(power_w)
    if ok.sum() < 2:
        return None
    t = times_ns[ok].astype(np.float64) / 1e9
    return float(np.trapezoid(power_w[ok], t))


def integrate_between(times_ns: np.ndarray, power_w: np.ndarray, start_ns: int, end_ns: int) -> float | None:
    """Integral (J) over exactly [start, end] of the piecewise-linear curve through the valid points.

    The points must bracket the interval (pass samples from a little before to a little after);
    None when they do not or when fewer than two points are valid.
    """
    ok = ~np.isnan(power_w)
    t, p = times_ns[ok].astype(np.int64), power_w[ok]
    if len(t) < 2 or t[0] > start_ns or t[-1] < end_ns or end_ns <= start_ns:
        return None
    inside = (t > start_ns) & (t < end_ns)
    edge_p = np.interp([start_ns, end_ns], t, p)
    tt = np.concatenate(([start_ns], t[inside], [end_ns])).astype(np.float64) / 1e9
    pp = np.concatenate(([edge_p[0]], p[inside], [edge_p[1]]))
    return float(np.trapezoid(pp, tt))


def utc_text(epoch_ns: int) -> str:
    """An epoch-ns time as ISO 8601 UTC with milliseconds, e.g. 2025-01-31T12:00:05.045Z."""
    stamp = datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _clean(value: Any) -> Any:
    """Replace NaN/inf floats by None so the result is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


@dataclass
class GpuWindow:
    """Energy of one GPU over one window. Times are when the counter was read (or saw its update)."""

    gpu: int
    energy_j: float | None
    method: str
    start_epoch_ns: int
    end_epoch_ns: int
    start_monotonic_ns: int
    end_monotonic_ns: int
    duration_s: float
    avg_power_w: float | None
    peak_power_w: float | None
    sample_count: int
    expected_samples: int
    missing_samples: int
    failed_samples: int
    complete: bool
    note: str
    integrated_energy_j: float | None = None  # trapezoid over instant-power samples, as a cross-check
    boundary_uncertainty_s: float | None = None  # how well start/end are known (None: not aligned)
    start_energy_mj: int | None = None
    end_energy_mj: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuWindow:
        """The inverse of to_dict (keys it does not know are ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def describe(self) -> str:
        """One line: energy, method, the interval it covers (UTC) and its length."""
        energy = "n/a" if self.energy_j is None else f"{self.energy_j:.1f} J"
        return (
            f"{energy} ({self.method}) from {utc_text(self.start_epoch_ns)} to {utc_text(self.end_epoch_ns)} "
            f"({self.duration_s:.3f} s){'' if self.complete else ', incomplete: ' + self.note}"
        )


@dataclass
class WindowResult:
    """Energy of every monitored GPU over one named window."""

    name: str
    start_epoch_ns: int
    end_epoch_ns: int
    start_monotonic_ns: int
    end_monotonic_ns: int
    interval_s: float
    gpus: dict[int, GpuWindow] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_monotonic_ns - self.start_monotonic_ns) / 1e9

    @property
    def complete(self) -> bool:
        return all(g.complete for g in self.gpus.values())

    @property
    def total_energy_j(self) -> float | None:
        values = [g.energy_j for g in self.gpus.values()]
        return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]

    @property
    def energy_j(self) -> dict[int, float | None]:
        return {gpu: g.energy_j for gpu, g in self.gpus.items()}

    def split_static_dynamic(self, idle_power_w: Mapping[int, float | None]) -> dict[int, dict[str, Any]]:
        """Per GPU: static = idle power x duration, dynamic = total - static (None where unknown)."""
        return split_static_dynamic(self, idle_power_w)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowResult:
        """The inverse of to_dict: a window read back from a monitor's JSON."""
        return cls(
            name=data["name"],
            start_epoch_ns=data["start_epoch_ns"],
            end_epoch_ns=data["end_epoch_ns"],
            start_monotonic_ns=data["start_monotonic_ns"],
            end_monotonic_ns=data["end_monotonic_ns"],
            interval_s=data["interval_s"],
            gpus={int(gpu): GpuWindow.from_dict(g) for gpu, g in data["gpus"].items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "name": self.name,
                "start_epoch_ns": self.start_epoch_ns,
                "end_epoch_ns": self.end_epoch_ns,
                "start_monotonic_ns": self.start_monotonic_ns,
                "end_monotonic_ns": self.end_monotonic_ns,
                "duration_s": self.duration_s,
                "interval_s": self.interval_s,
                "complete": self.complete,
                "total_energy_j": self.total_energy_j,
                "gpus": {str(gpu): g.to_dict() for gpu, g in self.gpus.items()},
            }
        )


def split_static_dynamic(
    window: WindowResult, idle_power_w: Mapping[int, float | None]
) -> dict[int, dict[str, Any]]:
    """Split each GPU's window energy into static (idle power x its duration) and dynamic (the rest)."""
    out: dict[int, dict[str, Any]] = {}
    for gpu, g in window.gpus.items():
        idle = idle_power_w.get(gpu)
        if idle is None or g.energy_j is None:
            out[gpu] = {"total_j": g.energy_j, "idle_power_w": idle, "static_j": None, "dynamic_j": None}
            continue
        static = idle * g.duration_s
        out[gpu] = {
            "total_j": g.energy_j,
            "idle_power_w": idle,
            "static_j": static,
            "dynamic_j": g.energy_j - static,
        }
    return out

"""Energy-window results and the arithmetic behind them (counter deltas with wrap-around, trapezoids)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import msgspec
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


@dataclass(slots=True, kw_only=True)
class GpuWindow:
    """Energy of one GPU over one window. Times are when the counter was read (or saw its update).

    The run's result stores it as is (experiments.schema.GpuEnergy is this type plus the run's view of
    the GPU: its role, node and idle power); the defaults are what a reader assumes of a field it
    lacks, the monitor sets every field.
    """

    index: int  # NVML index (on a cluster run's result: the GPU's position across nodes)
    energy_j: float | None = None
    method: str = ""
    start_epoch_ns: int | None = None
    end_epoch_ns: int | None = None
    start_monotonic_ns: int | None = None  # None where the clock is another host's (cluster runs)
    end_monotonic_ns: int | None = None
    duration_s: float = 0.0
    avg_power_w: float | None = None
    peak_power_w: float | None = None
    sample_count: int = 0
    expected_samples: int = 0
    missing_samples: int = 0
    failed_samples: int = 0
    complete: bool = True
    note: str = ""
    integrated_energy_j: float | None = None  # trapezoid over instant-power samples, as a cross-check
    boundary_uncertainty_s: float | None = None  # how well start/end are known (None: not aligned)
    start_energy_mj: int | None = None
    end_energy_mj: int | None = None

    def describe(self) -> str:
        """One line: energy, method, the interval it covers (UTC) and its length."""
        energy = "n/a" if self.energy_j is None else f"{self.energy_j:.1f} J"
        span = (
            "an unknown interval"
            if self.start_epoch_ns is None or self.end_epoch_ns is None
            else f"{utc_text(self.start_epoch_ns)} to {utc_text(self.end_epoch_ns)}"
        )
        return (
            f"{energy} ({self.method}) from {span} "
            f"({self.duration_s:.3f} s){'' if self.complete else ', incomplete: ' + self.note}"
        )

    def shifted(self, delta_ns: int) -> GpuWindow:
        """This window with its epoch times moved by `delta_ns` (onto another host's clock)."""
        return replace(
            self,
            start_epoch_ns=None if self.start_epoch_ns is None else self.start_epoch_ns + delta_ns,
            end_epoch_ns=None if self.end_epoch_ns is None else self.end_epoch_ns + delta_ns,
        )


@dataclass(slots=True, kw_only=True)
class EnergyWindow:
    """A named window's span: when it was opened and closed (epoch and monotonic ns) and the sampling
    interval it was measured at. The result's `energy.window` is this type."""

    name: str
    start_epoch_ns: int
    end_epoch_ns: int
    start_monotonic_ns: int
    end_monotonic_ns: int
    duration_s: float
    interval_s: float


@dataclass(slots=True, kw_only=True)
class WindowResult(EnergyWindow):
    """Energy of every monitored GPU over one named window (keyed by NVML index).

    As JSON (the monitor's export, a node monitor's answer): `window_json` / `read_window`."""

    gpus: dict[int, GpuWindow] = field(default_factory=dict)

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

    def span(self) -> EnergyWindow:
        """The window without its GPUs."""
        return EnergyWindow(**{f.name: getattr(self, f.name) for f in fields(EnergyWindow)})

    def shifted(self, delta_ns: int) -> WindowResult:
        """This window with every epoch time moved by `delta_ns` (a node's window onto our clock)."""
        return replace(
            self,
            start_epoch_ns=self.start_epoch_ns + delta_ns,
            end_epoch_ns=self.end_epoch_ns + delta_ns,
            gpus={gpu: g.shifted(delta_ns) for gpu, g in self.gpus.items()},
        )

    def split_static_dynamic(self, idle_power_w: Mapping[int, float | None]) -> dict[int, dict[str, Any]]:
        """Per GPU: static = idle power x duration, dynamic = total - static (None where unknown)."""
        return split_static_dynamic(self, idle_power_w)


def window_json(window: WindowResult | GpuWindow) -> dict[str, Any]:
    """A window (or one GPU's) as plain JSON values: msgspec's mapping of the dataclass, NaN as null."""
    return _clean(msgspec.to_builtins(window, str_keys=True))


def read_window(data: Mapping[str, Any]) -> WindowResult:
    """A window from its JSON (`window_json`, or the hand-written form of earlier monitors: keys that
    were derived, such as `complete`, are ignored; a GPU's `gpu` key became `index`)."""
    gpus = data.get("gpus")
    if isinstance(gpus, Mapping):  # before the one window type, a GPU's index was its `gpu` key
        data = {
            **data,
            "gpus": {
                k: {"index": g.get("gpu"), **g} if isinstance(g, Mapping) else g for k, g in gpus.items()
            },
        }
    try:
        return msgspec.convert(data, WindowResult, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"not a monitor window: {exc}") from exc


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

"""Energy windows: begin/end on the counter's steps, per-GPU energy and power, and the idle baseline.

A window's energy is the counter delta between its two boundaries (wrap-around handled step by step,
using the sampler's counter reads in between). A GPU without an energy counter falls back to integrating
its sampled instant power (trapezoids), and the window's note says so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.alignment import AlignSettings, Boundary, CounterRead, read_boundaries
from monitor.energy import (
    METHOD_COUNTER,
    METHOD_INTEGRATED,
    GpuWindow,
    WindowResult,
    counter_delta_mj,
    split_static_dynamic,
    trapezoid_energy_j,
)
from monitor.fields import READS, VALUE_INDEX, VALUE_NAMES
from monitor.nvml_lib import UNSUPPORTED_ERRORS, describe
from monitor.sampler import Sampler
from monitor.store import Samples

P_INSTANT = VALUE_INDEX["power_instant_mw"]
P_USAGE = VALUE_INDEX["power_mw"]
_ENERGY = VALUE_INDEX["energy_mj"]
UNKNOWN_POWER_LIMIT_W = 1000.0  # assumed where NVML gives no power limit
_SAMPLE_MARGIN_NS = 1_000_000_000  # samples starting slightly outside still count per GPU read time


@dataclass
class _OpenWindow:
    name: str
    epoch_ns: int
    mono_ns: int
    boundaries: dict[int, Boundary]


class WindowMeter:
    """Named energy windows over the GPUs of `sampler`; `power_limit_w` bounds plausible counter deltas."""

    def __init__(
        self, sampler: Sampler, power_limit_w: dict[int, float | None], align: AlignSettings | None = None
    ) -> None:
        self.sampler = sampler
        self.clock = sampler.clock
        self.gpu_ids = sampler.gpu_ids
        self.power_limit_w = power_limit_w
        self.align = align or AlignSettings()
        self._lock = threading.Lock()
        self._open: dict[str, _OpenWindow] = {}
        self.windows: dict[str, WindowResult] = {}
        self.idle_power_w: dict[int, float | None] | None = None
        self.idle_window: WindowResult | None = None

    # -- reads at the boundaries -------------------------------------------------------------------

    def _read_counter(self, g: int) -> CounterRead:
        t0 = self.clock.monotonic_ns()
        try:
            v = self.sampler.backend.total_energy_mj(self.gpu_ids[g])
        except Exception as err:
            t1 = self.clock.monotonic_ns()
            if isinstance(err, UNSUPPORTED_ERRORS):
                self.sampler.mark_unsupported(g, "energy", err)
                return CounterRead(None, t0, t1, unsupported=True)
            return CounterRead(None, t0, t1, error=describe(err))
        return CounterRead(int(v), t0, self.clock.monotonic_ns())

    def _read_instant_w(self, gpu: int) -> float | None:
        backend = self.sampler.backend
        for method in ("power_instant_mw", "power_mw"):
            try:
                return getattr(backend, method)(gpu) / 1000
            except Exception:  # fall back to the next power reading
                continue
        return None

    def _boundaries(self, align: bool) -> dict[int, Boundary]:
        out = read_boundaries(self._read_counter, len(self.gpu_ids), align, self.align, self.clock)
        for g, b in out.items():
            b.instant_w = self._read_instant_w(self.gpu_ids[g])
        return out

    # -- windows -----------------------------------------------------------------------------------

    def begin(self, name: str, *, align: bool = True) -> None:
        """Open window `name`: read each GPU's energy counter now (on its next step with `align`)."""
        with self._lock:
            if name in self._open:
                raise ValueError(f"window {name!r} is already open; end it before beginning it again")
            self._open[name] = _OpenWindow(name, 0, 0, {})  # reserve the name
        try:
            epoch, mono = self.clock.time_ns(), self.clock.monotonic_ns()
            boundaries = self._boundaries(align)
        except BaseException:
            with self._lock:
                del self._open[name]
            raise
        with self._lock:
            self._open[name] = _OpenWindow(name, epoch, mono, boundaries)

    def end(self, name: str, *, align: bool = True) -> WindowResult:
        """Close window `name` and return per-GPU energy, power and sample statistics."""
        with self._lock:
            opened = self._open.get(name)
            if opened is None or opened.mono_ns == 0:
                raise KeyError(f"no open window named {name!r}; call begin_window({name!r}) first")
            del self._open[name]
        epoch, mono = self.clock.time_ns(), self.clock.monotonic_ns()
        ends = self._boundaries(align)
        samples = self.sampler.store.slice(
            min(b.read_before_ns for b in opened.boundaries.values()) - _SAMPLE_MARGIN_NS,
            max(b.read_after_ns for b in ends.values()) + _SAMPLE_MARGIN_NS,
        )
        result = WindowResult(
            name=name,
            start_epoch_ns=opened.epoch_ns,
            end_epoch_ns=epoch,
            start_monotonic_ns=opened.mono_ns,
            end_monotonic_ns=mono,
            duration_s=(mono - opened.mono_ns) / 1e9,
            interval_s=self.sampler.interval_s,
        )
        to_epoch = opened.epoch_ns - opened.mono_ns
        for g, gpu in enumerate(self.gpu_ids):
            result.gpus[gpu] = self._gpu_window(g, opened.boundaries[g], ends[g], samples, to_epoch)
        self.windows[name] = result
        return result

    def _gpu_window(self, g: int, b0: Boundary, b1: Boundary, s: Samples, to_epoch: int) -> GpuWindow:
        gpu = self.gpu_ids[g]
        interval_s = self.sampler.interval_s
        notes: list[str] = [n for n in (b0.note, b1.note) if n]
        complete = True
        duration_s = (b1.mono_ns - b0.mono_ns) / 1e9
        t = s.gpu_monotonic_ns[:, g]
        inside = (t >= b0.mono_ns) & (t <= b1.mono_ns)
        failed = s.failed[inside, g]
        n_failed = int(failed.sum())
        n_good = int(inside.sum()) - n_failed
        expected = round(duration_s / interval_s) if duration_s > 0 else 0

        # Power points for the peak and the trapezoid: boundary reads plus samples in between.
        field = P_INSTANT if not np.all(np.isnan(s.values[inside, g, P_INSTANT])) else P_USAGE
        times = np.concatenate(([b0.mono_ns], t[inside], [b1.mono_ns]))
        watts = np.concatenate(
            (
                [np.nan if b0.instant_w is None else b0.instant_w],
                s.values[inside, g, field] / 1000,
                [np.nan if b1.instant_w is None else b1.instant_w],
            )
        )
        integrated = trapezoid_energy_j(times, watts)
        peak = float(np.nanmax(watts)) if np.any(~np.isnan(watts)) else None

        energy_j: float | None
        if b0.energy_mj is not None and b1.energy_mj is not None:
            method = METHOD_COUNTER
            energy_j, counter_notes, counter_ok = self._counter_energy(g, b0, b1, s, duration_s)
            notes += counter_notes
            complete &= counter_ok
        elif "energy" in self.sampler.unsupported[g]:
            method = METHOD_INTEGRATED
            energy_j = integrated
            source = "instant power" if field == P_INSTANT else "nvmlDeviceGetPowerUsage (1 s average)"
            notes.append(
                f"energy counter unsupported on this GPU: energy integrated (trapezoids) from "
                f"{len(times) - int(np.isnan(watts).sum())} {source} points"
            )
            if energy_j is None:
                complete = False
        else:
            method = METHOD_COUNTER
            energy_j = None
            complete = False
            for side, b in (("begin", b0), ("end", b1)):
                if b.error:
                    notes.append(f"energy counter read failed at window {side}: {b.error}")
        if n_failed:
            complete = False
            notes.append(self._failure_note(g, s.failed_mask[inside, g], n_failed, n_good))
        if n_good + n_failed == 0 and expected > 0:
            notes.append(
                "no samples in the window (sampler not running?): peak power from boundary reads only"
            )
        if field == P_USAGE and method == METHOD_COUNTER:
            integrated = None  # a cross-check against a 1 s trailing average would mislead
        return GpuWindow(
            index=gpu,
            energy_j=energy_j,
            method=method,
            start_epoch_ns=b0.mono_ns + to_epoch,
            end_epoch_ns=b1.mono_ns + to_epoch,
            start_monotonic_ns=b0.mono_ns,
            end_monotonic_ns=b1.mono_ns,
            duration_s=duration_s,
            avg_power_w=None if energy_j is None or duration_s <= 0 else energy_j / duration_s,
            peak_power_w=peak,
            sample_count=n_good,
            expected_samples=expected,
            missing_samples=max(0, expected - n_good),
            failed_samples=n_failed,
            complete=complete,
            note="; ".join(notes) if notes else f"ok (peak from {VALUE_NAMES[field]} samples)",
            integrated_energy_j=integrated,
            boundary_uncertainty_s=None
            if b0.uncertainty_ns is None or b1.uncertainty_ns is None
            else (b0.uncertainty_ns + b1.uncertainty_ns) / 1e9,
            start_energy_mj=b0.energy_mj,
            end_energy_mj=b1.energy_mj,
        )

    def _failure_note(self, g: int, masks: np.ndarray, n_failed: int, n_good: int) -> str:
        gpu = self.gpu_ids[g]
        kinds = {READS[r].name: int(((masks >> r) & 1).sum()) for r in range(len(READS))}
        detail = ", ".join(f"{k} x{v}" for k, v in kinds.items() if v)
        errors = sorted({self.sampler.last_error.get((gpu, k), "?") for k, v in kinds.items() if v})
        return (
            f"GPU lost or NVML reads failed in {n_failed} of {n_failed + n_good} samples "
            f"({detail}): {'; '.join(errors)}"
        )

    def _counter_energy(
        self, g: int, b0: Boundary, b1: Boundary, s: Samples, duration_s: float
    ) -> tuple[float, list[str], bool]:
        """Counter delta in J over begin, the sampler's reads strictly between, and end."""
        reads = s.energy_read_ns[:, g]
        vals = s.values[:, g, _ENERGY]
        between = (reads[:, 0] > b0.read_after_ns) & (reads[:, 1] < b1.read_before_ns) & ~np.isnan(vals)
        seq = [b0.energy_mj, *(int(v) for v in vals[between]), b1.energy_mj]
        times = [b0.read_after_ns, *reads[between, 0].tolist(), b1.read_before_ns]
        wrap = int(self.sampler.backend.energy_wrap_mj)
        energy_j = counter_delta_mj(seq, wrap) / 1000  # type: ignore[arg-type]
        notes: list[str] = []
        ok = True
        limit = self.power_limit_w.get(self.gpu_ids[g]) or UNKNOWN_POWER_LIMIT_W
        if duration_s > 0 and energy_j / duration_s > 2 * limit:
            notes.append(
                f"counter delta implies {energy_j / duration_s:.0f} W (> 2x the {limit:.0f} W limit): "
                "counter reset or missed wrap; energy not trustworthy"
            )
            ok = False
        max_gap_s = max(np.diff(times).max() / 1e9, 0.0) if len(times) > 1 else 0.0
        if max_gap_s * 2 * limit * 1000 >= wrap:
            notes.append(
                f"{max_gap_s:.1f} s between counter reads could hide more than one wrap (wrap {wrap} mJ)"
            )
            ok = False
        return energy_j, notes, ok

    # -- idle baseline -----------------------------------------------------------------------------

    def measure_idle(self, seconds: float) -> dict[int, float | None]:
        """Average power per GPU over the next `seconds` (counter based); kept for static/dynamic splits."""
        self.begin("idle")
        self.clock.sleep(seconds)
        window = self.end("idle")
        self.idle_window = window
        self.idle_power_w = {gpu: w.avg_power_w for gpu, w in window.gpus.items()}
        return dict(self.idle_power_w)

    def split_static_dynamic(
        self, window: WindowResult, idle_power_w: dict[int, float | None] | None = None
    ) -> dict[int, dict[str, Any]]:
        """Static (idle power x duration) and dynamic (rest) energy per GPU, using measure_idle's result."""
        idle = idle_power_w if idle_power_w is not None else self.idle_power_w
        if idle is None:
            raise RuntimeError("no idle baseline: call measure_idle(seconds) first or pass idle_power_w")
        return split_static_dynamic(window, idle)

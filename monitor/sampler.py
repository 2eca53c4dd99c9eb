"""PowerMonitor: samples GPUs in its own thread, and measures energy windows from the NVML counter.

Energy of a window comes from the total-energy counter read synchronously at begin_window/end_window
(the counter delta, wrap-around handled). The counter only moves on its update period (about 100 ms),
so by default each boundary polls the counter until it steps and stamps the boundary at that step: the
energy and the duration then cover the same interval. When a GPU has no energy counter, the window falls
back to integrating the sampled instant power (trapezoids) and says so.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.backends import GpuBackend, open_backend, pynvml
from monitor.csv_io import CSV_UNITS, CsvSink, csv_columns
from monitor.energy import (
    METHOD_COUNTER,
    METHOD_INTEGRATED,
    GpuWindow,
    WindowResult,
    counter_delta_mj,
    integrate_between,
    split_static_dynamic,
    trapezoid_energy_j,
)
from monitor.fields import READ_NAMES, READS, VALUE_INDEX, VALUE_NAMES

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.01
_E = READ_NAMES.index("energy")
_P_INSTANT = VALUE_INDEX["power_instant_mw"]
_P_USAGE = VALUE_INDEX["power_mw"]
_ENERGY = VALUE_INDEX["energy_mj"]
_METHODS = tuple(r.method for r in READS)
_SLOTS = tuple(tuple(VALUE_INDEX[v] for v in r.values) for r in READS)


def _error_classes(*names: str) -> tuple[type[BaseException], ...]:
    if pynvml is None:
        return ()
    return tuple(getattr(pynvml, n) for n in names if hasattr(pynvml, n))


_UNSUPPORTED = _error_classes("NVMLError_NotSupported", "NVMLError_FunctionNotFound")
_GPU_LOST = _error_classes("NVMLError_GpuIsLost")


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class _RateLimitedWarnings:
    """Logs the first occurrence of each key, then at most one line per `every_s` with a count."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_ns = int(every_s * 1e9)
        self._state: dict[tuple[Any, ...], list[int]] = {}  # key -> [last log ns, suppressed]

    def warn(self, key: tuple[Any, ...], message: str) -> None:
        now = time.monotonic_ns()
        state = self._state.get(key)
        if state is None:
            self._state[key] = [now, 0]
            log.warning("%s (further repeats are rate limited)", message)
        elif now - state[0] >= self.every_ns:
            log.warning("%s (%d more since the last warning)", message, state[1])
            state[0], state[1] = now, 0
        else:
            state[1] += 1


class _Store:
    """Growable numpy arrays, one row per sample. The sampler thread writes; readers take slices."""

    def __init__(self, n_gpus: int, capacity: int = 4096) -> None:
        self.n = 0
        self.lock = threading.Lock()
        self._alloc(n_gpus, capacity)

    def _alloc(self, g: int, cap: int) -> None:
        self.epoch_ns = np.zeros(cap, np.int64)
        self.mono_ns = np.zeros(cap, np.int64)
        self.gpu_mono_ns = np.zeros((cap, g), np.int64)  # time each GPU's reads began
        self.energy_read_ns = np.zeros((cap, g, 2), np.int64)  # energy read began / ended
        self.values = np.full((cap, g, len(VALUE_NAMES)), np.nan)
        self.latency_ns = np.full((cap, g, len(READS)), -1, np.int64)
        self.failed_mask = np.zeros((cap, g), np.int32)  # bit r: read r failed

    def row(self) -> int:
        """Index of the next row, growing the arrays when full (called by the writer only)."""
        if self.n == len(self.epoch_ns):
            with self.lock:
                for name in ("epoch_ns", "mono_ns", "gpu_mono_ns", "energy_read_ns", "values", "latency_ns",
                             "failed_mask"):  # fmt: skip
                    old = getattr(self, name)
                    new = np.empty((2 * len(old), *old.shape[1:]), old.dtype)
                    new[: len(old)] = old
                    if name == "values":
                        new[len(old) :] = np.nan
                    elif name == "latency_ns":
                        new[len(old) :] = -1
                    setattr(self, name, new)
        return self.n

    def commit(self) -> None:
        with self.lock:
            self.n += 1

    def slice(self, start_mono_ns: int | None = None, end_mono_ns: int | None = None) -> Samples:
        """Copy of the samples whose start time lies in [start, end] (all when None)."""
        with self.lock:
            n = self.n
            mono = self.mono_ns[:n]
            lo = 0 if start_mono_ns is None else int(np.searchsorted(mono, start_mono_ns, "left"))
            hi = n if end_mono_ns is None else int(np.searchsorted(mono, end_mono_ns, "right"))
            sl = slice(lo, hi)
            return Samples(
                epoch_ns=self.epoch_ns[sl].copy(),
                monotonic_ns=self.mono_ns[sl].copy(),
                gpu_monotonic_ns=self.gpu_mono_ns[sl].copy(),
                energy_read_ns=self.energy_read_ns[sl].copy(),
                values=self.values[sl].copy(),
                latency_ns=self.latency_ns[sl].copy(),
                failed_mask=self.failed_mask[sl].copy(),
            )


@dataclass
class Samples:
    """Samples as arrays: axis 0 sample, axis 1 GPU (position in gpu_ids), axis 2 value/read."""

    epoch_ns: np.ndarray
    monotonic_ns: np.ndarray
    gpu_monotonic_ns: np.ndarray
    energy_read_ns: np.ndarray
    values: np.ndarray  # stored units (mW, mJ, bytes, MHz, %, C); NaN where missing
    latency_ns: np.ndarray  # per read; -1 where not read or failed
    failed_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.epoch_ns)

    def value(self, g: int, name: str) -> np.ndarray:
        """One stored value (see monitor.fields.VALUE_NAMES) of GPU position g."""
        return self.values[:, g, VALUE_INDEX[name]]

    @property
    def failed(self) -> np.ndarray:
        return self.failed_mask != 0


@dataclass
class _CounterRead:
    value: int | None
    before_ns: int
    after_ns: int
    error: str | None = None
    unsupported: bool = False


@dataclass
class _Boundary:
    """One GPU's side of a window: counter value, the time it stands for, and that time's uncertainty."""

    energy_mj: int | None
    mono_ns: int
    read_before_ns: int
    read_after_ns: int
    uncertainty_ns: int | None  # None: not aligned to a counter step
    instant_w: float | None = None
    note: str | None = None
    error: str | None = None

    @classmethod
    def unaligned(cls, r: _CounterRead, note: str | None) -> _Boundary:
        mid = (r.before_ns + r.after_ns) // 2
        return cls(r.value, mid, r.before_ns, r.after_ns, None, note=note, error=r.error)


@dataclass
class _OpenWindow:
    name: str
    epoch_ns: int
    mono_ns: int
    boundaries: dict[int, _Boundary]


class PowerMonitor:
    """Samples `gpu_ids` every `interval_s` in a background thread; measures energy windows.

    Typical use: `mon.start(); idle = mon.measure_idle(5); mon.begin_window("measured"); ...;
    w = mon.end_window("measured"); mon.stop(); mon.to_json(); mon.timeline(500)`.

    Args:
        gpu_ids: NVML device indices (NVML orders by PCI bus id; CUDA does too with
            CUDA_DEVICE_ORDER=PCI_BUS_ID).
        interval_s: sampling period, >= 0.01 s.
        backend: a GpuBackend; default open_backend("auto") (raises MonitorUnavailable without NVML).
        csv_path: stream one CSV row per sample here (flushed every `csv_flush_every_s`).
        reads: subset of monitor.fields.READ_NAMES to sample (default all).
        align_timeout_s, align_poll_s, align_max_gap_s: how window boundaries wait for, poll and
            bracket the energy counter's next step (see begin_window).
    """

    def __init__(
        self,
        gpu_ids: Sequence[int],
        interval_s: float = 0.1,
        backend: GpuBackend | None = None,
        csv_path: Path | str | None = None,
        *,
        reads: Sequence[str] | None = None,
        align_timeout_s: float = 0.5,
        align_poll_s: float = 0.001,
        align_max_gap_s: float = 0.004,
        csv_flush_every_s: float = 1.0,
    ) -> None:
        if not gpu_ids:
            raise ValueError("gpu_ids is empty; pass the NVML indices to monitor, e.g. [0, 1]")
        if len(set(gpu_ids)) != len(gpu_ids):
            raise ValueError(f"gpu_ids has duplicates: {list(gpu_ids)}")
        if not interval_s >= MIN_INTERVAL_S:
            raise ValueError(f"interval_s={interval_s} is below the {MIN_INTERVAL_S} s minimum")
        self.backend: GpuBackend = backend if backend is not None else open_backend("auto")
        count = self.backend.device_count()
        bad = [g for g in gpu_ids if not 0 <= g < count]
        if bad:
            raise ValueError(f"GPU ids {bad} not present: the {self.backend.name} backend has {count} GPU(s)")
        unknown = set(reads or ()) - set(READ_NAMES)
        if unknown:
            raise ValueError(f"unknown reads {sorted(unknown)}; known: {', '.join(READ_NAMES)}")
        self.gpu_ids = [int(g) for g in gpu_ids]
        self.interval_s = float(interval_s)
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self.align_timeout_s = align_timeout_s
        self.align_poll_s = align_poll_s
        self.align_max_gap_s = align_max_gap_s
        self.csv_flush_every_s = csv_flush_every_s
        wanted = set(reads) if reads is not None else set(READ_NAMES)
        self.reads = [name for name in READ_NAMES if name in wanted]
        n = len(self.gpu_ids)
        self._enabled = [[r.name in wanted for r in READS] for _ in range(n)]
        self._unsupported: list[set[str]] = [set() for _ in range(n)]
        self._last_error: dict[tuple[int, str], str] = {}
        self._warnings = _RateLimitedWarnings()
        self._store = _Store(n)
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._csv: CsvSink | None = None
        self._windows_lock = threading.Lock()
        self._open: dict[str, _OpenWindow] = {}
        self.windows: dict[str, WindowResult] = {}
        self.idle_power_w: dict[int, float | None] | None = None
        self.idle_window: WindowResult | None = None
        self.started_epoch_ns: int | None = None
        self.started_mono_ns: int | None = None
        self.stopped_mono_ns: int | None = None
        self.skipped_ticks = 0
        self._limit_w: dict[int, float | None] = {}
        self.static = self._read_static()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> PowerMonitor:
        """Start the sampling thread (and the CSV file when csv_path was given)."""
        if self._thread is not None:
            raise RuntimeError("PowerMonitor already started; create a new one to sample again")
        if self.csv_path is not None:
            self._csv = CsvSink(self.csv_path, self.gpu_ids, self.csv_flush_every_s)
        self.started_epoch_ns, self.started_mono_ns = time.time_ns(), time.monotonic_ns()
        self._thread = threading.Thread(target=self._run, name="power-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, then flush and close the CSV. Safe to call twice."""
        if self._thread is None or self.stopped_mono_ns is not None:
            return
        self._stop_event.set()
        self._thread.join(timeout=max(5.0, 10 * self.interval_s))
        if self._thread.is_alive():  # pragma: no cover - a hung NVML call
            log.warning("power monitor thread did not stop within the timeout; CSV closed anyway")
        self.stopped_mono_ns = time.monotonic_ns()
        if self._csv is not None:
            self._csv.close()

    def close(self) -> None:
        """Stop and release the backend."""
        self.stop()
        self.backend.close()

    def __enter__(self) -> PowerMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self.stopped_mono_ns is None

    # -- sampling ----------------------------------------------------------------------------------

    def _read_static(self) -> dict[str, Any]:
        """Name, power limit, clocks and P-state of each GPU at start (None where a read fails)."""
        b = self.backend

        def safe(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as err:
                log.warning("static read %s%s failed: %s", getattr(fn, "__name__", fn), args, _describe(err))
                return None

        gpus = {}
        for gpu in self.gpu_ids:
            limit = safe(b.power_limit_mw, gpu)
            mem = safe(b.memory, gpu)
            self._limit_w[gpu] = None if limit is None else limit / 1000
            gpus[str(gpu)] = {
                "name": safe(b.gpu_name, gpu),
                "power_limit_w": self._limit_w[gpu],
                "memory_total_bytes": None if mem is None else mem[1],
                "graphics_clock_mhz": safe(b.graphics_clock_mhz, gpu),
                "sm_clock_mhz": safe(b.sm_clock_mhz, gpu),
                "mem_clock_mhz": safe(b.mem_clock_mhz, gpu),
                "pstate": safe(b.pstate, gpu),
                "temperature_c": safe(b.temperature_c, gpu),
            }
        return {"backend": b.name, "driver_version": safe(b.driver_version), "gpus": gpus}

    def _run(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        next_ns = time.monotonic_ns()
        while not self._stop_event.is_set():
            try:
                self._sample_once()
            except Exception as err:  # a bug must not kill the thread silently
                self._warnings.warn(("sample",), f"power sample failed: {_describe(err)}")
            next_ns += interval_ns
            now = time.monotonic_ns()
            if now >= next_ns:  # overran: drop the ticks we missed rather than bursting
                missed = (now - next_ns) // interval_ns + 1
                self.skipped_ticks += missed
                next_ns += missed * interval_ns
            # time.sleep wakes up cheaper than Event.wait; stop() is seen within 0.25 s at most.
            while (wait_ns := next_ns - time.monotonic_ns()) > 0 and not self._stop_event.is_set():
                time.sleep(min(wait_ns / 1e9, 0.25))

    def _sample_once(self) -> None:
        """Read every enabled field of every GPU once; plain lists here, one numpy store per row."""
        monotonic_ns = time.monotonic_ns
        epoch, mono = time.time_ns(), monotonic_ns()
        backend, n_reads, nan = self.backend, len(READS), math.nan
        rows: list[list[float]] = []
        lats: list[list[int]] = []
        gpu_t: list[int] = []
        energy_t: list[tuple[int, int]] = []
        energies: list[int | None] = []
        masks: list[int] = []
        for g, gpu in enumerate(self.gpu_ids):
            vals = [nan] * len(VALUE_NAMES)
            lat = [-1] * n_reads
            e_t, energy, mask = (0, 0), None, 0
            enabled = self._enabled[g]
            gpu_t.append(monotonic_ns())
            for r in range(n_reads):
                if not enabled[r]:
                    continue
                t0 = monotonic_ns()
                try:
                    v = getattr(backend, _METHODS[r])(gpu)
                except Exception as err:
                    if isinstance(err, _UNSUPPORTED):
                        self._mark_unsupported(g, r, err)
                        continue
                    mask |= 1 << r
                    self._note_failure(g, READS[r].name, err)
                    if isinstance(err, _GPU_LOST):  # the other reads would fail the same way
                        mask |= sum(1 << k for k in range(r + 1, n_reads) if enabled[k])
                        break
                    continue
                t1 = monotonic_ns()
                lat[r] = t1 - t0
                slots = _SLOTS[r]
                if len(slots) == 1:
                    vals[slots[0]] = v
                else:
                    for k, x in zip(slots, v, strict=True):
                        vals[k] = x
                if r == _E:
                    e_t, energy = (t0, t1), int(v)
            rows.append(vals)
            lats.append(lat)
            energy_t.append(e_t)
            energies.append(energy)
            masks.append(mask)
        store = self._store
        i = store.row()
        store.epoch_ns[i], store.mono_ns[i] = epoch, mono
        store.gpu_mono_ns[i] = gpu_t
        store.energy_read_ns[i] = energy_t
        store.values[i] = rows
        store.latency_ns[i] = lats
        store.failed_mask[i] = masks
        store.commit()
        if self._csv is not None:
            try:
                self._csv.write(epoch, mono, rows, energies, [m != 0 for m in masks])
            except OSError as err:
                log.error("writing %s failed (%s); CSV output stopped, sampling goes on", self.csv_path, err)
                self._csv = None

    def _mark_unsupported(self, g: int, r: int, err: BaseException) -> None:
        name = READS[r].name
        self._enabled[g][r] = False
        self._unsupported[g].add(name)
        log.info("GPU %d: %s not supported (%s); recorded as null", self.gpu_ids[g], READS[r].nvml_call, err)

    def _note_failure(self, g: int, read: str, err: BaseException) -> None:
        gpu = self.gpu_ids[g]
        self._last_error[(gpu, read)] = _describe(err)
        self._warnings.warn(
            (gpu, read, type(err).__name__),
            f"GPU {gpu}: NVML read {read} failed ({_describe(err)}); sample marked missing, sampling goes on",
        )

    # -- energy windows ----------------------------------------------------------------------------

    def _read_counter(self, g: int) -> _CounterRead:
        gpu = self.gpu_ids[g]
        t0 = time.monotonic_ns()
        try:
            v = self.backend.total_energy_mj(gpu)
        except Exception as err:
            t1 = time.monotonic_ns()
            if isinstance(err, _UNSUPPORTED):
                if "energy" not in self._unsupported[g]:
                    self._mark_unsupported(g, _E, err)
                return _CounterRead(None, t0, t1, unsupported=True)
            return _CounterRead(None, t0, t1, error=_describe(err))
        return _CounterRead(int(v), t0, time.monotonic_ns())

    def _read_instant_w(self, gpu: int) -> float | None:
        for method in ("power_instant_mw", "power_mw"):
            try:
                return getattr(self.backend, method)(gpu) / 1000
            except Exception:  # fall back to the next power reading
                continue
        return None

    def _boundaries(self, align: bool) -> dict[int, _Boundary]:
        """Read every GPU's counter now. With `align`, poll until it steps and stamp the step's time, to
        within half the gap between the two reads that bracket it (retried on the next step while the
        gap exceeds align_max_gap_s, e.g. on a busy host)."""
        first = {g: self._read_counter(g) for g in range(len(self.gpu_ids))}
        out: dict[int, _Boundary] = {}
        prev: dict[int, _CounterRead] = {}
        best: dict[int, _Boundary] = {}
        for g, r in first.items():
            if r.value is None or not align:
                out[g] = _Boundary.unaligned(
                    r, None if r.value is None else "boundary not aligned to a counter step"
                )
            else:
                prev[g] = r
        max_gap_ns = int(self.align_max_gap_s * 1e9)
        deadline = time.monotonic_ns() + int(self.align_timeout_s * 1e9)
        while prev:
            if time.monotonic_ns() >= deadline:
                for g in prev:
                    if g in best:
                        b = best[g]
                        b.note = (
                            f"counter step bracketed only to +-{b.uncertainty_ns / 1e6:.1f} ms (busy host?)"
                        )
                        out[g] = b
                    else:
                        out[g] = _Boundary.unaligned(
                            first[g],
                            f"counter did not step within {self.align_timeout_s} s; boundary uncertain by up "
                            "to one counter update period",
                        )
                break
            time.sleep(self.align_poll_s)
            for g in list(prev):
                p, r = prev[g], self._read_counter(g)
                if r.value is None:
                    out[g] = _Boundary.unaligned(r, None)
                    del prev[g]
                    continue
                if r.value != p.value:  # it stepped between the two reads
                    gap = r.after_ns - p.before_ns
                    cand = _Boundary(
                        r.value, (p.before_ns + r.after_ns) // 2, r.before_ns, r.after_ns, gap // 2
                    )
                    if gap <= max_gap_ns:
                        out[g] = cand
                        del prev[g]
                        continue
                    if g not in best or cand.uncertainty_ns < best[g].uncertainty_ns:  # type: ignore[operator]
                        best[g] = cand
                prev[g] = r
        return out

    def begin_window(self, name: str, *, align: bool = True) -> None:
        """Open energy window `name`: reads each GPU's energy counter now, in this thread.

        With align=True (default) it polls the counter (every align_poll_s) until it steps, up to one
        update period (~100 ms), and stamps the window's start at that step, so that the counter delta
        and the duration cover the same interval. align=False returns at once but leaves up to one
        update period of mismatch at each end."""
        with self._windows_lock:
            if name in self._open:
                raise ValueError(f"window {name!r} is already open; end it before beginning it again")
            self._open[name] = _OpenWindow(name, 0, 0, {})  # reserve the name
        try:
            epoch, mono = time.time_ns(), time.monotonic_ns()
            boundaries = self._boundaries(align)
            self._add_instant(boundaries)
        except BaseException:
            with self._windows_lock:
                del self._open[name]
            raise
        with self._windows_lock:
            self._open[name] = _OpenWindow(name, epoch, mono, boundaries)

    def end_window(self, name: str, *, align: bool = True) -> WindowResult:
        """Close window `name` and return per-GPU energy, power and sample statistics.

        The window's own start/end are when begin_window/end_window were called; each GPU's start/end
        (and duration_s, avg_power_w) are those of its counter steps (see begin_window)."""
        with self._windows_lock:
            opened = self._open.get(name)
            if opened is None or opened.mono_ns == 0:
                raise KeyError(f"no open window named {name!r}; call begin_window({name!r}) first")
            del self._open[name]
        epoch, mono = time.time_ns(), time.monotonic_ns()
        ends = self._boundaries(align)
        self._add_instant(ends)
        margin = 1_000_000_000  # samples starting slightly outside still count per GPU read time
        samples = self._store.slice(
            min(b.read_before_ns for b in opened.boundaries.values()) - margin,
            max(b.read_after_ns for b in ends.values()) + margin,
        )
        result = WindowResult(
            name=name,
            start_epoch_ns=opened.epoch_ns,
            end_epoch_ns=epoch,
            start_monotonic_ns=opened.mono_ns,
            end_monotonic_ns=mono,
            interval_s=self.interval_s,
        )
        to_epoch = opened.epoch_ns - opened.mono_ns
        for g, gpu in enumerate(self.gpu_ids):
            result.gpus[gpu] = self._gpu_window(g, opened.boundaries[g], ends[g], samples, to_epoch)
        self.windows[name] = result
        return result

    def _add_instant(self, boundaries: dict[int, _Boundary]) -> None:
        for g, b in boundaries.items():
            b.instant_w = self._read_instant_w(self.gpu_ids[g])

    def _gpu_window(self, g: int, b0: _Boundary, b1: _Boundary, s: Samples, to_epoch: int) -> GpuWindow:
        gpu = self.gpu_ids[g]
        notes: list[str] = [n for n in (b0.note, b1.note) if n]
        complete = True
        duration_s = (b1.mono_ns - b0.mono_ns) / 1e9
        t = s.gpu_monotonic_ns[:, g]
        inside = (t >= b0.mono_ns) & (t <= b1.mono_ns)
        failed = s.failed[inside, g]
        n_failed = int(failed.sum())
        n_good = int(inside.sum()) - n_failed
        expected = round(duration_s / self.interval_s) if duration_s > 0 else 0

        # Power points for the peak and the trapezoid: boundary reads plus samples in between.
        field = _P_INSTANT if not np.all(np.isnan(s.values[inside, g, _P_INSTANT])) else _P_USAGE
        field_name = VALUE_NAMES[field]
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
        elif "energy" in self._unsupported[g]:
            method = METHOD_INTEGRATED
            energy_j = integrated
            source = "instant power" if field == _P_INSTANT else "nvmlDeviceGetPowerUsage (1 s average)"
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
            kinds = {
                READS[r].name: int(((s.failed_mask[inside, g] >> r) & 1).sum()) for r in range(len(READS))
            }
            detail = ", ".join(f"{k} x{v}" for k, v in kinds.items() if v)
            errors = sorted({self._last_error.get((gpu, k), "?") for k, v in kinds.items() if v})
            notes.append(
                f"GPU lost or NVML reads failed in {n_failed} of {n_failed + n_good} samples "
                f"({detail}): {'; '.join(errors)}"
            )
        if n_good + n_failed == 0 and expected > 0:
            notes.append(
                "no samples in the window (sampler not running?): peak power from boundary reads only"
            )
        if field == _P_USAGE and method == METHOD_COUNTER:
            integrated = None  # a cross-check against a 1 s trailing average would mislead
        return GpuWindow(
            gpu=gpu,
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
            note="; ".join(notes) if notes else f"ok (peak from {field_name} samples)",
            integrated_energy_j=integrated,
            boundary_uncertainty_s=None
            if b0.uncertainty_ns is None or b1.uncertainty_ns is None
            else (b0.uncertainty_ns + b1.uncertainty_ns) / 1e9,
            start_energy_mj=b0.energy_mj,
            end_energy_mj=b1.energy_mj,
        )

    def _counter_energy(
        self, g: int, b0: _Boundary, b1: _Boundary, s: Samples, duration_s: float
    ) -> tuple[float, list[str], bool]:
        """Counter delta in J over begin, the sampler's reads strictly between, and end."""
        reads = s.energy_read_ns[:, g]
        vals = s.values[:, g, _ENERGY]
        between = (reads[:, 0] > b0.read_after_ns) & (reads[:, 1] < b1.read_before_ns) & ~np.isnan(vals)
        seq = [b0.energy_mj, *(int(v) for v in vals[between]), b1.energy_mj]
        times = [b0.read_after_ns, *reads[between, 0].tolist(), b1.read_before_ns]
        wrap = int(self.backend.energy_wrap_mj)
        energy_j = counter_delta_mj(seq, wrap) / 1000  # type: ignore[arg-type]
        notes: list[str] = []
        ok = True
        limit = self._limit_w.get(self.gpu_ids[g]) or 1000.0
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
        name = "idle"
        self.begin_window(name)
        time.sleep(seconds)
        window = self.end_window(name)
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

    # -- data out ----------------------------------------------------------------------------------

    def samples(self, start_monotonic_ns: int | None = None, end_monotonic_ns: int | None = None) -> Samples:
        """A copy of the samples taken so far (optionally those starting within [start, end])."""
        return self._store.slice(start_monotonic_ns, end_monotonic_ns)

    def integrate_power_j(
        self, gpu: int, start_monotonic_ns: int, end_monotonic_ns: int, value: str = "power_instant_mw"
    ) -> float | None:
        """Energy (J) over exactly [start, end] from one sampled power value, e.g. "power_instant_mw" or
        "power_mw" (trapezoids, interpolated at the edges). None without samples bracketing the interval."""
        g = self.gpu_ids.index(gpu)
        margin = int(3 * self.interval_s * 1e9)
        s = self.samples(start_monotonic_ns - margin, end_monotonic_ns + margin)
        return integrate_between(s.gpu_monotonic_ns[:, g], s.value(g, value) / 1000, start_monotonic_ns,
                                 end_monotonic_ns)  # fmt: skip

    def timeline(self, max_points: int = 500) -> dict[str, Any]:
        """Power per GPU over time, averaged into at most `max_points` time bins (for result JSON)."""
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        s = self.samples()
        out: dict[str, Any] = {"epoch_ns": [], "power_w": {str(gpu): [] for gpu in self.gpu_ids}}
        if len(s) == 0:
            return {**out, "source": None, "points": 0, "samples": 0, "bin_s": None}
        use_instant = not np.all(np.isnan(s.values[:, :, _P_INSTANT]))
        field = _P_INSTANT if use_instant else _P_USAGE
        power = s.values[:, :, field] / 1000
        if len(s) <= max_points:  # every sample is a point
            bins, n_bins = np.arange(len(s)), len(s)
            bin_s = self.interval_s
        else:  # equal time bins
            edges = np.linspace(s.monotonic_ns[0], s.monotonic_ns[-1] + 1, max_points + 1)
            bins = np.clip(np.searchsorted(edges, s.monotonic_ns, "right") - 1, 0, max_points - 1)
            n_bins, bin_s = max_points, float(edges[1] - edges[0]) / 1e9
        counts = np.bincount(bins, minlength=n_bins)
        keep = counts > 0
        epoch = (
            np.bincount(bins, weights=s.epoch_ns - s.epoch_ns[0], minlength=len(counts))[keep] / counts[keep]
        )
        out["epoch_ns"] = [int(x) + int(s.epoch_ns[0]) for x in epoch]
        for g, gpu in enumerate(self.gpu_ids):
            p = power[:, g]
            ok = ~np.isnan(p)
            total = np.bincount(bins[ok], weights=p[ok], minlength=len(counts))[keep]
            n_ok = np.bincount(bins[ok], minlength=len(counts))[keep]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = total / n_ok
            out["power_w"][str(gpu)] = [None if math.isnan(x) else round(float(x), 2) for x in mean]
        out.update(
            source=VALUE_NAMES[field],
            points=int(keep.sum()),
            samples=len(s),
            bin_s=bin_s,
        )
        return out

    def latency_stats(self) -> dict[str, dict[str, float | int | None]]:
        """NVML read latency per read (successful reads only): mean, p50, p99, max in microseconds."""
        s = self.samples()
        stats: dict[str, dict[str, float | int | None]] = {}
        for r, read in enumerate(READS):
            lat = s.latency_ns[:, :, r].ravel()
            lat = lat[lat >= 0] / 1000
            if len(lat) == 0:
                stats[read.name] = {"n": 0, "mean_us": None, "p50_us": None, "p99_us": None, "max_us": None}
                continue
            stats[read.name] = {
                "n": len(lat),
                "mean_us": round(float(lat.mean()), 2),
                "p50_us": round(float(np.percentile(lat, 50)), 2),
                "p99_us": round(float(np.percentile(lat, 99)), 2),
                "max_us": round(float(lat.max()), 2),
            }
        return stats

    def _missing_spans(self, s: Samples, g: int, limit: int = 200) -> list[dict[str, int]]:
        failed = s.failed[:, g]
        if not failed.any():
            return []
        padded = np.concatenate(([False], failed, [False])).astype(np.int8)
        starts = np.flatnonzero(np.diff(padded) == 1)
        ends = np.flatnonzero(np.diff(padded) == -1) - 1
        return [
            {
                "first_sample": int(a),
                "last_sample": int(b),
                "count": int(b - a + 1),
                "start_epoch_ns": int(s.epoch_ns[a]),
                "end_epoch_ns": int(s.epoch_ns[b]),
            }
            for a, b in list(zip(starts, ends, strict=True))[:limit]
        ]

    def to_json(self) -> dict[str, Any]:
        """Everything a result file needs about this monitor, as a JSON-serializable dict."""
        s = self.samples()
        end = self.stopped_mono_ns or time.monotonic_ns()
        elapsed_s = (end - self.started_mono_ns) / 1e9 if self.started_mono_ns is not None else 0.0
        expected = int(elapsed_s / self.interval_s) + 1 if elapsed_s > 0 else 0
        per_gpu = {}
        for g, gpu in enumerate(self.gpu_ids):
            failed = int(s.failed[:, g].sum())
            per_gpu[str(gpu)] = {
                **self.static["gpus"][str(gpu)],
                "samples_ok": len(s) - failed,
                "samples_missing": failed,
                "missing_spans": self._missing_spans(s, g),
                "unsupported_reads": sorted(self._unsupported[g]),
            }
        windows = {name: w.to_dict() for name, w in self.windows.items()}
        splits = (
            {
                name: {str(k): v for k, v in split_static_dynamic(w, self.idle_power_w).items()}
                for name, w in self.windows.items()
                if name != "idle"
            }
            if self.idle_power_w is not None
            else {}
        )
        return {
            "backend": self.static["backend"],
            "driver_version": self.static["driver_version"],
            "gpu_ids": list(self.gpu_ids),
            "gpus": per_gpu,
            "interval_s": self.interval_s,
            "reads": list(self.reads),
            "started_epoch_ns": self.started_epoch_ns,
            "duration_s": elapsed_s,
            "sample_count": len(s),
            "expected_samples": expected,
            "achieved_sample_fraction": (len(s) / expected) if expected else None,
            "achieved_sample_rate_hz": (len(s) / elapsed_s) if elapsed_s > 0 else None,
            "skipped_ticks": self.skipped_ticks,
            "read_latency_us": self.latency_stats(),
            "energy_counter_wrap_mj": str(self.backend.energy_wrap_mj),
            "csv_path": None if self.csv_path is None else str(self.csv_path),
            "csv_columns": csv_columns(self.gpu_ids),
            "csv_units": CSV_UNITS,
            "idle_power_w": None
            if self.idle_power_w is None
            else {str(k): v for k, v in self.idle_power_w.items()},
            "windows": windows,
            "static_dynamic_split": splits,
        }

"""PowerMonitor: the monitor's one public object, tying the sampling thread, energy windows and export.

Energy of a window comes from the NVML total-energy counter read at begin_window/end_window, on the
counter's steps (monitor.alignment); the sampling thread (monitor.sampler) records power and the rest
beside it; monitor.export turns both into the result's JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.alignment import AlignSettings
from monitor.backends import GpuBackend, open_backend
from monitor.clock import Clock
from monitor.counter_schedule import CounterSchedule, wrap_safe_period_s
from monitor.energy import WindowResult, integrate_between
from monitor.export import monitor_summary, power_timeline
from monitor.fields import READ_NAMES
from monitor.sampler import MIN_INTERVAL_S, Sampler, read_gpu_info
from monitor.store import Samples
from monitor.windows import UNKNOWN_POWER_LIMIT_W, WindowMeter

__all__ = ["MIN_INTERVAL_S", "PowerMonitor"]


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
        counter_read_every_s: seconds between the sampling thread's own reads of the energy counter
            (>= its ~0.1 s update period); default: as often as 0.2% of a core allows, given what the
            first read costs (see monitor.counter_schedule). Windows read it at their edges regardless.
        clock: the time source it stamps and waits on (monitor.clock); default the backend's, which
            is the system's for NVML and whatever a simulated backend was given (a VirtualClock in
            tests, on which idle baselines and windows take no real time).
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
        counter_read_every_s: float | None = None,
        clock: Clock | None = None,
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
        wanted = set(reads) if reads is not None else set(READ_NAMES)
        self.reads = [name for name in READ_NAMES if name in wanted]
        self.static = read_gpu_info(self.backend, self.gpu_ids)
        limits = {gpu: self.static["gpus"][str(gpu)]["power_limit_w"] for gpu in self.gpu_ids}
        max_power_w = max((w for w in limits.values() if w), default=UNKNOWN_POWER_LIMIT_W)
        counters = CounterSchedule(
            len(self.gpu_ids),
            self.interval_s,
            counter_read_every_s,
            wrap_safe_period_s(self.backend.energy_wrap_mj, max_power_w),
        )
        self._sampler = Sampler(
            self.backend,
            self.gpu_ids,
            self.interval_s,
            self.reads,
            self.csv_path,
            csv_flush_every_s,
            counters,
            clock,
        )
        self._meter = WindowMeter(
            self._sampler, limits, AlignSettings(align_timeout_s, align_poll_s, align_max_gap_s)
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> PowerMonitor:
        """Start the sampling thread (and the CSV file when csv_path was given)."""
        self._sampler.start()
        return self

    def stop(self) -> None:
        """Stop sampling, then flush and close the CSV. Safe to call twice."""
        self._sampler.stop()

    def close(self) -> None:
        """Stop and release the backend."""
        self.stop()
        self.backend.close()

    def __enter__(self) -> PowerMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def clock(self) -> Clock:
        return self._sampler.clock

    @property
    def running(self) -> bool:
        return self._sampler.running

    @property
    def started_epoch_ns(self) -> int | None:
        return self._sampler.started_epoch_ns

    @property
    def skipped_ticks(self) -> int:
        return self._sampler.skipped_ticks

    # -- energy windows ----------------------------------------------------------------------------

    def begin_window(self, name: str, *, align: bool = True) -> None:
        """Open energy window `name`: reads each GPU's energy counter now, in this thread.

        With align=True (default) it polls the counter (every align_poll_s) until it steps, up to one
        update period (~100 ms), and stamps the window's start at that step, so that the counter delta
        and the duration cover the same interval. align=False returns at once but leaves up to one
        update period of mismatch at each end."""
        self._meter.begin(name, align=align)

    def end_window(self, name: str, *, align: bool = True) -> WindowResult:
        """Close window `name` and return per-GPU energy, power and sample statistics.

        The window's own start/end are when begin_window/end_window were called; each GPU's start/end
        (and duration_s, avg_power_w) are those of its counter steps (see begin_window)."""
        return self._meter.end(name, align=align)

    @property
    def windows(self) -> dict[str, WindowResult]:
        return self._meter.windows

    def measure_idle(self, seconds: float) -> dict[int, float | None]:
        """Average power per GPU over the next `seconds` (counter based); kept for static/dynamic splits."""
        return self._meter.measure_idle(seconds)

    @property
    def idle_power_w(self) -> dict[int, float | None] | None:
        return self._meter.idle_power_w

    @property
    def idle_window(self) -> WindowResult | None:
        return self._meter.idle_window

    def split_static_dynamic(
        self, window: WindowResult, idle_power_w: dict[int, float | None] | None = None
    ) -> dict[int, dict[str, Any]]:
        """Static (idle power x duration) and dynamic (rest) energy per GPU, using measure_idle's result."""
        return self._meter.split_static_dynamic(window, idle_power_w)

    # -- data out ----------------------------------------------------------------------------------

    def samples(self, start_monotonic_ns: int | None = None, end_monotonic_ns: int | None = None) -> Samples:
        """A copy of the samples taken so far (optionally those starting within [start, end])."""
        return self._sampler.store.slice(start_monotonic_ns, end_monotonic_ns)

    def integrate_power_j(
        self, gpu: int, start_monotonic_ns: int, end_monotonic_ns: int, value: str = "power_instant_mw"
    ) -> float | None:
        """Energy (J) over exactly [start, end] from one sampled power value, e.g. "power_instant_mw" or
        "power_mw" (trapezoids, interpolated at the edges). None without samples bracketing the interval."""
        g = self.gpu_ids.index(gpu)
        margin = int(3 * self.interval_s * 1e9)
        s = self.samples(start_monotonic_ns - margin, end_monotonic_ns + margin)
        return integrate_between(
            s.gpu_monotonic_ns[:, g], s.value(g, value) / 1000, start_monotonic_ns, end_monotonic_ns
        )

    def timeline(self, max_points: int = 500) -> dict[str, Any]:
        """Power per GPU over time, averaged into at most `max_points` time bins (for result JSON)."""
        return power_timeline(self.samples(), self.gpu_ids, self.interval_s, max_points)

    def to_json(self) -> dict[str, Any]:
        """Everything a result file needs about this monitor, as a JSON-serializable dict."""
        return monitor_summary(self._sampler, self._meter, self.static, self.reads)

"""Power per state for a profile, through the project's monitor (counter-based energy windows).

Without NVML (CPU hosts) the monitor cannot open and every power field stays None with its reason.
`--monitor sim` uses the monitor's simulated NVML backend: it exercises the same code, but its watts
follow a synthetic trace, not the load, and the profile says so.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from monitor import MonitorUnavailable, PowerMonitor, open_backend
from planner.profile_model import PowerPoint

MIN_WINDOW_S = 0.5  # shorter windows see too few ~100 ms counter updates


class PowerProbe:
    def __init__(self, kind: str, gpu: int, interval_s: float = 0.1) -> None:
        self.gpu = gpu
        self.monitor: PowerMonitor | None = None
        self.reason: str | None = None
        self.simulated = kind == "sim"
        self.device: dict[str, Any] = {}
        if kind == "none":
            self.reason = "power not measured (--monitor none)"
            return
        try:
            backend = open_backend(kind, n_gpus=gpu + 1) if kind == "sim" else open_backend(kind)
            self.device = _device_info(backend, gpu)
            self.monitor = PowerMonitor([gpu], interval_s, backend).start()
        except MonitorUnavailable as exc:
            self.reason = str(exc)

    @property
    def available(self) -> bool:
        return self.monitor is not None

    def idle(self, seconds: float) -> PowerPoint | None:
        if self.monitor is None or seconds <= 0:
            return None
        watts = self.monitor.measure_idle(seconds).get(self.gpu)
        return PowerPoint("idle", float(watts), seconds) if watts is not None else None

    async def begin(self, name: str) -> float:
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.begin_window, name)
        return time.perf_counter()

    async def end(self, name: str, state: str, batch: int | None = None) -> PowerPoint | None:
        if self.monitor is None:
            return None
        window = await asyncio.to_thread(self.monitor.end_window, name)
        g = window.gpus.get(self.gpu)
        if g is None or g.avg_power_w is None or g.duration_s < MIN_WINDOW_S:
            return None
        return PowerPoint(state, float(g.avg_power_w), float(g.duration_s), g.energy_j, batch)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()


def _device_info(backend: Any, gpu: int) -> dict[str, Any]:
    """Name, memory, clocks and power limit as read (never set)."""

    def read(fn: str, *args: Any) -> Any:
        try:
            return getattr(backend, fn)(*args)
        except Exception:  # an unsupported read leaves the field out
            return None

    memory = read("memory", gpu)
    limit = read("power_limit_mw", gpu)
    return {
        "name": read("gpu_name", gpu),
        "memory_total_bytes": memory[1] if memory else None,
        "sm_clock_mhz": read("sm_clock_mhz", gpu),
        "mem_clock_mhz": read("mem_clock_mhz", gpu),
        "power_limit_w": limit / 1000 if limit is not None else None,
        "driver": read("driver_version"),
    }

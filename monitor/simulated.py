"""A simulated NVML device that keeps NVML's semantics, for tests, demos and CI without a GPU.

Driven by a power trace `power_w(gpu, t)` (t: seconds since the backend was created, on its `clock`:
the system's, or a monitor.clock.VirtualClock that tests drive, which the monitor then runs on too):
- `total_energy_mj`: integer mJ, monotonic, advanced only every `energy_period_s` (it steps), and wraps
  at `energy_wrap_mj`;
- `power_mw` / `power_average_mw`: integer mW, trailing `average_window_s` average updated on the same
  period (nvmlDeviceGetPowerUsage on Ampere and newer);
- `power_instant_mw`: integer mW, the instantaneous value;
- faults raise real pynvml.NVMLError subclasses: GpuIsLost inside `lost` intervals, NotSupported for
  reads named in `unsupported`;
- `total_energy_mj` costs `energy_read_cost_s` of CPU per call (default 3.5 ms, what
  nvmlDeviceGetTotalEnergyConsumption takes on an H200), busy but letting other threads run, as a
  ctypes call into the driver does; `read_latency_s` adds an idle wait to every read.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.fields import READ_NAMES
from monitor.nvml_lib import require_pynvml

PowerTrace = Callable[[int, float], float]

GIB = 2**30
H200_ENERGY_READ_S = 0.0035


def demo_power_trace(gpu: int, t: float) -> float:
    """A load-like trace: idle for 1 s of every 4 s, busy otherwise (GPU 0 spiky, others steadier)."""
    idle_w = 75.0
    if t < 0 or (t % 4.0) < 1.0:
        return idle_w
    if gpu == 0:
        return 420.0 + 180.0 * math.sin(2 * math.pi * t / 1.3) + 60.0 * math.sin(2 * math.pi * t / 0.17)
    return 300.0 + 40.0 * math.sin(2 * math.pi * (t + 0.3 * gpu) / 2.1)


class SimulatedNvmlBackend:
    """Simulated GPUs with NVML units, update periods, counter wrap-around and NVML errors."""

    name = "sim"

    def __init__(
        self,
        n_gpus: int = 2,
        power_w: PowerTrace | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        energy_period_s: float = 0.1,
        counter_phase_s: float = 0.0,
        average_window_s: float = 1.0,
        instant_period_s: float = 0.0,
        energy_wrap_mj: int = 2**64,
        initial_energy_mj: int | Sequence[int] = 0,
        lost: Mapping[int, Sequence[tuple[float, float]]] | None = None,
        unsupported: Collection[str] | Mapping[int, Collection[str]] = (),
        integration_step_s: float = 0.001,
        gpu_name: str = "Simulated NVIDIA H200",
        driver_version: str = "sim-570.00",
        power_limit_w: float = 700.0,
        idle_power_w: float = 75.0,
        memory_total_bytes: int = 141 * GIB,
        memory_used_fraction: float = 0.85,
        read_latency_s: float = 0.0,
        energy_read_cost_s: float = H200_ENERGY_READ_S,
    ) -> None:
        self._nv = require_pynvml()
        if n_gpus < 1:
            raise ValueError("n_gpus must be >= 1")
        if energy_period_s <= 0 or integration_step_s <= 0:
            raise ValueError("energy_period_s and integration_step_s must be > 0")
        self.n_gpus = n_gpus
        self.power_trace: PowerTrace = power_w or demo_power_trace
        self.clock = clock
        self.t0 = clock.monotonic_ns() / 1e9
        self.energy_period_s = energy_period_s
        self.counter_phase_s = counter_phase_s
        self.instant_period_s = instant_period_s
        self.energy_wrap_mj = int(energy_wrap_mj)
        self.integration_step_s = integration_step_s
        self._gpu_name = gpu_name
        self._driver_version = driver_version
        self.power_limit_w = power_limit_w
        self.idle_power_w = idle_power_w
        self.memory_total_bytes = memory_total_bytes
        self.memory_used_fraction = memory_used_fraction
        self.read_latency_s = read_latency_s
        self.energy_read_cost_s = energy_read_cost_s
        self.lost = {int(g): [(float(a), float(b)) for a, b in spans] for g, spans in (lost or {}).items()}
        self.unsupported = self._unsupported_by_gpu(unsupported)
        initial = (
            [initial_energy_mj] * n_gpus if isinstance(initial_energy_mj, int) else list(initial_energy_mj)
        )
        self._initial_mj = [int(v) for v in initial]
        self._lock = threading.Lock()
        avg_ticks = max(1, round(average_window_s / energy_period_s))
        first_tick = math.floor((0.0 - counter_phase_s) / energy_period_s)
        self._tick = [first_tick] * n_gpus  # index of the last counter update applied
        self._energy_mj = [0.0] * n_gpus  # exact energy accumulated up to that update
        self._recent = [
            deque([self.power_trace(g, 0.0) * energy_period_s * 1000.0] * avg_ticks, maxlen=avg_ticks)
            for g in range(n_gpus)
        ]

    def _unsupported_by_gpu(self, spec: Collection[str] | Mapping[int, Collection[str]]) -> list[set[str]]:
        per_gpu = (
            [set(spec.get(g, ())) for g in range(self.n_gpus)]
            if isinstance(spec, Mapping)
            else [set(spec) for _ in range(self.n_gpus)]
        )
        for names in per_gpu:
            unknown = names - set(READ_NAMES)
            if unknown:
                raise ValueError(f"unknown read names {sorted(unknown)}; known: {', '.join(READ_NAMES)}")
        return per_gpu

    # -- simulation core -------------------------------------------------------------------------

    def now(self) -> float:
        """Simulated time in seconds since the backend was created."""
        return self.clock.monotonic_ns() / 1e9 - self.t0

    def sim_time_of(self, monotonic_ns: int) -> float:
        """Simulated time of a stamp of its clock's monotonic_ns() (the monitor's, which runs on it)."""
        return monotonic_ns / 1e9 - self.t0

    def tick_time(self, k: int) -> float:
        """Simulated time of counter update number k."""
        return self.counter_phase_s + k * self.energy_period_s

    def _integrate_mj(self, gpu: int, a: float, b: float) -> float:
        n = max(1, round((b - a) / self.integration_step_s))
        ts = a + (b - a) * np.arange(n + 1) / n
        watts = np.fromiter((self.power_trace(gpu, float(t)) for t in ts), dtype=float, count=n + 1)
        return float(np.trapezoid(watts, ts)) * 1000.0

    def _advance(self, gpu: int, t: float) -> None:
        target = math.floor((t - self.counter_phase_s) / self.energy_period_s)
        while self._tick[gpu] < target:
            k = self._tick[gpu]
            step_mj = self._integrate_mj(gpu, self.tick_time(k), self.tick_time(k + 1))
            self._energy_mj[gpu] += step_mj
            self._recent[gpu].append(step_mj)
            self._tick[gpu] = k + 1

    def _enter(self, gpu: int, read: str) -> float:
        """Common checks for every read: bad index, lost GPU, unsupported read. Returns sim time."""
        nv = self._nv
        if self.read_latency_s > 0:
            self.clock.sleep(self.read_latency_s)
        if not 0 <= gpu < self.n_gpus:
            raise nv.NVMLError_InvalidArgument()
        t = self.now()
        if any(a <= t < b for a, b in self.lost.get(gpu, ())):
            raise nv.NVMLError_GpuIsLost()
        if read in self.unsupported[gpu]:
            raise nv.NVMLError_NotSupported()
        return t

    def _instant_w(self, gpu: int, t: float) -> float:
        if self.instant_period_s > 0:
            t = math.floor(t / self.instant_period_s) * self.instant_period_s
        return float(self.power_trace(gpu, t))

    def _util_pct(self, gpu: int, t: float) -> int:
        busy_w = 0.8 * self.power_limit_w - self.idle_power_w
        frac = (self._instant_w(gpu, t) - self.idle_power_w) / busy_w
        return round(100 * min(1.0, max(0.0, frac)))

    # -- GpuBackend ----------------------------------------------------------------------------------

    def device_count(self) -> int:
        return self.n_gpus

    def driver_version(self) -> str:
        return self._driver_version

    def gpu_name(self, gpu: int) -> str:
        self._enter(gpu, "")
        return self._gpu_name

    def power_limit_mw(self, gpu: int) -> int:
        self._enter(gpu, "")
        return round(self.power_limit_w * 1000)

    def power_mw(self, gpu: int) -> int:
        t = self._enter(gpu, "power")
        return self._average_mw(gpu, t)

    def power_average_mw(self, gpu: int) -> int:
        t = self._enter(gpu, "power_average")
        return self._average_mw(gpu, t)

    def _average_mw(self, gpu: int, t: float) -> int:
        with self._lock:
            self._advance(gpu, t)
            recent = self._recent[gpu]
            return round(sum(recent) / (len(recent) * self.energy_period_s))

    def power_instant_mw(self, gpu: int) -> int:
        t = self._enter(gpu, "power_instant")
        return round(self._instant_w(gpu, t) * 1000)

    def total_energy_mj(self, gpu: int) -> int:
        self.clock.busy(self.energy_read_cost_s / 2)  # the value is taken mid-call
        t = self._enter(gpu, "energy")
        with self._lock:
            self._advance(gpu, t)
            whole_mj = math.floor(round(self._energy_mj[gpu], 6))  # round off float noise first
        self.clock.busy(self.energy_read_cost_s / 2)
        return (self._initial_mj[gpu] + whole_mj) % self.energy_wrap_mj

    def utilization(self, gpu: int) -> tuple[int, int]:
        t = self._enter(gpu, "utilization")
        util = self._util_pct(gpu, t)
        return util, round(util * 0.6)

    def memory(self, gpu: int) -> tuple[int, int]:
        self._enter(gpu, "memory")
        return int(self.memory_total_bytes * self.memory_used_fraction), self.memory_total_bytes

    def temperature_c(self, gpu: int) -> int:
        t = self._enter(gpu, "temperature")
        return round(30 + 45 * self._instant_w(gpu, t) / self.power_limit_w)

    def graphics_clock_mhz(self, gpu: int) -> int:
        t = self._enter(gpu, "graphics_clock")
        return 1980 if self._util_pct(gpu, t) > 5 else 345

    def sm_clock_mhz(self, gpu: int) -> int:
        t = self._enter(gpu, "sm_clock")
        return 1980 if self._util_pct(gpu, t) > 5 else 345

    def mem_clock_mhz(self, gpu: int) -> int:
        self._enter(gpu, "mem_clock")
        return 3201

    def throttle_reasons(self, gpu: int) -> int:
        t = self._enter(gpu, "throttle_reasons")
        nv = self._nv
        if self._instant_w(gpu, t) >= 0.98 * self.power_limit_w:
            return int(nv.nvmlClocksThrottleReasonSwPowerCap)
        return int(nv.nvmlClocksThrottleReasonGpuIdle) if self._util_pct(gpu, t) <= 5 else 0

    def pstate(self, gpu: int) -> int:
        self._enter(gpu, "pstate")
        return 0

    def close(self) -> None:
        """Nothing to release."""

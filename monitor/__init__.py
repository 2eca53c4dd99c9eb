"""NVML power monitor: background sampling, counter-based energy windows, CSV/JSON output, plots.

Public API: PowerMonitor, open_backend, MonitorUnavailable, NvmlBackend, SimulatedNvmlBackend,
WindowResult (and GpuWindow, GpuBackend, Samples). Plots live in monitor.plot (imports matplotlib).
"""

from __future__ import annotations

from monitor.backends import GpuBackend, MonitorUnavailable, NvmlBackend, open_backend
from monitor.energy import GpuWindow, WindowResult, split_static_dynamic
from monitor.power_monitor import PowerMonitor
from monitor.simulated import SimulatedNvmlBackend, demo_power_trace
from monitor.store import Samples

__all__ = [
    "GpuBackend",
    "GpuWindow",
    "MonitorUnavailable",
    "NvmlBackend",
    "PowerMonitor",
    "Samples",
    "SimulatedNvmlBackend",
    "WindowResult",
    "demo_power_trace",
    "open_backend",
    "split_static_dynamic",
]

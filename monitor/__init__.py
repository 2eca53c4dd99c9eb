"""NVML power monitor: background sampling, counter-based energy windows, CSV/JSON output, plots.

Public API: PowerMonitor, open_backend, MonitorUnavailable, NvmlBackend, SimulatedNvmlBackend,
WindowResult (and EnergyWindow, GpuWindow, GpuBackend, Samples; window_json/read_window: a window as
JSON and back). Plots live in monitor.plot (imports matplotlib).
"""

from __future__ import annotations

from monitor.backends import GpuBackend, MonitorUnavailable, NvmlBackend, open_backend
from monitor.energy import (
    EnergyWindow,
    GpuWindow,
    WindowResult,
    read_window,
    split_static_dynamic,
    window_json,
)
from monitor.power_monitor import PowerMonitor
from monitor.simulated import SimulatedNvmlBackend, demo_power_trace
from monitor.store import Samples

__all__ = [
    "EnergyWindow",
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
    "read_window",
    "split_static_dynamic",
    "window_json",
]

"""One node's power monitor, driven from another host (the body of a Ray actor; Ray itself is not used here).

`NodeMonitor` runs a `PowerMonitor` on the GPUs of the node it lives on and answers with its clock
(for monitor.clock's offset measurement), the idle baseline, typed window results (`WindowResult`,
pickled by Ray like any return value) and, at the end, the monitor's export and power timeline (plain
JSON values). Every time it returns is this node's epoch ns: the caller puts
them on its own clock with the measured offset.

Test only: with the simulated backend, the environment variable SIM_CLOCK_SKEW_ENV (ns) makes this node's
clock run that far ahead, in everything it reports, as a node whose clock is off would; the caller's
offset measurement must recover it. A real backend ignores the variable.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from monitor.backends import open_backend_for
from monitor.energy import WindowResult
from monitor.power_monitor import PowerMonitor

SIM_CLOCK_SKEW_ENV = "TESTBED_SIM_CLOCK_SKEW_NS"
_EPOCH_KEYS = ("start_epoch_ns", "end_epoch_ns", "started_epoch_ns")


def shift_epochs(data: Any, delta_ns: int) -> Any:
    """`data` (an export or timeline as plain JSON) with every epoch-ns value moved by `delta_ns`
    (a typed window moves itself: `WindowResult.shifted`)."""
    if not delta_ns:
        return data
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in _EPOCH_KEYS and isinstance(value, int):
                out[key] = value + delta_ns
            elif key == "epoch_ns" and isinstance(value, list):
                out[key] = [v + delta_ns for v in value]
            else:
                out[key] = shift_epochs(value, delta_ns)
        return out
    if isinstance(data, list):
        return [shift_epochs(v, delta_ns) for v in data]
    return data


class NodeMonitor:
    """A PowerMonitor on this node's `gpu_ids` (NVML indices here)."""

    def __init__(self, gpu_ids: list[int], interval_s: float, backend: str, csv_path: str | None) -> None:
        self.skew_ns = int(os.environ.get(SIM_CLOCK_SKEW_ENV, "0")) if backend == "sim" else 0
        self.host = socket.gethostname()
        if csv_path is not None:  # the runner's run directory, which this node may not have yet
            Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        self.monitor = PowerMonitor(
            gpu_ids, interval_s, open_backend_for(backend, list(gpu_ids)), csv_path=csv_path
        )

    def clock_ns(self) -> int:
        """This node's epoch clock now."""
        return time.time_ns() + self.skew_ns

    def start(self) -> str:
        self.monitor.start()
        return self.host

    def measure_idle(self, seconds: float) -> dict[int, float | None]:
        return self.monitor.measure_idle(seconds)

    def begin_window(self, name: str) -> None:
        self.monitor.begin_window(name)

    def end_window(self, name: str) -> WindowResult:
        return self.monitor.end_window(name).shifted(self.skew_ns)

    def stop(self, timeline_points: int) -> dict[str, Any]:
        """Stop sampling; the monitor's export and its power timeline."""
        self.monitor.stop()
        return {
            "export": shift_epochs(self.monitor.to_json(), self.skew_ns),
            "timeline": shift_epochs(self.monitor.timeline(timeline_points), self.skew_ns),
        }

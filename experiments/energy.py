"""Energy of an experiment: the monitor around the measured window, turned into the result's section.

Per GPU: counter-based joules over the exact window of the measured requests and the idle power measured
before it (the schema's `EnergySection` derives the static/dynamic split, phases and totals from those).
Uses only monitor.PowerMonitor's public API. Without an NVIDIA driver the section is unavailable and
`reason` says why (energy is never zero for "not measured").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from experiments.schema import (
    EnergySection,
    GpuEnergy,
    HostEnergy,
    MonitorInfo,
    PowerTimeline,
    SchemaError,
    convert,
)
from monitor.energy import WindowResult
from monitor.rapl import POWERCAP, RaplUnavailable, RaplWindow

log = logging.getLogger(__name__)

TIMELINE_POINTS = 600


class EnergyMeter:
    """Wraps monitor.PowerMonitor; a no-op that records its reason when no GPU can be measured."""

    def __init__(
        self,
        gpu_ids: list[int],
        roles: dict[int, str],
        interval_s: float,
        backend: str,
        csv_path: Path,
        rapl_root: Path = POWERCAP,
        counter_every_s: float | None = None,
    ) -> None:
        self.gpu_ids, self.roles, self.interval_s = list(gpu_ids), dict(roles), interval_s
        self.counter_every_s = counter_every_s  # the sampler's counter reads (None: its CPU budget's)
        self.backend_kind, self.csv_path = backend, csv_path
        self.monitor: Any = None
        self.reason: str | None = None
        self.idle_w: dict[int, float | None] | None = None
        self.idle_seconds: float | None = None
        self.window: WindowResult | None = None
        self.rapl = RaplWindow(root=rapl_root)
        self.host: HostEnergy | None = None
        if backend == "none":
            self.reason = "monitoring disabled (--monitor none)"
        elif not self.gpu_ids:
            self.reason = "no GPUs to monitor (CPU run or --gpu-ids empty)"

    def start(self) -> None:
        if self.reason:
            return
        from monitor import MonitorUnavailable, PowerMonitor, open_backend

        try:
            backend = (
                open_backend(self.backend_kind) if isinstance(self.backend_kind, str) else self.backend_kind
            )
            self.monitor = PowerMonitor(
                self.gpu_ids,
                self.interval_s,
                backend,
                csv_path=self.csv_path,
                counter_read_every_s=self.counter_every_s,
            )
            self.monitor.start()
        except MonitorUnavailable as exc:
            self.reason = str(exc)
            self.monitor = None

    def measure_idle(self, seconds: float) -> None:
        if self.monitor is None:
            return
        self.idle_w = {int(k): v for k, v in self.monitor.measure_idle(seconds).items()}
        self.idle_seconds = seconds

    def begin(self) -> None:
        if self.monitor is not None:
            self.monitor.begin_window("measured")
        try:
            self.rapl.begin()
        except (RaplUnavailable, OSError, ValueError) as exc:
            self.host = HostEnergy(available=False, reason=str(exc), source=str(self.rapl.root))

    def end(self) -> None:
        if self.host is None:
            self._end_host()
        if self.monitor is not None and self.window is None:
            self.window = self.monitor.end_window("measured")

    def _end_host(self) -> None:
        """The host's RAPL window, closed right beside the GPUs'."""
        if not self.rapl.zones:
            return
        try:
            zones = self.rapl.end()
            self.host = convert(
                {
                    "available": True,
                    "source": str(self.rapl.root),
                    "duration_s": self.rapl.duration_s,
                    "zones": zones,
                },
                HostEnergy,
                "the RAPL window",
            )
        except (OSError, ValueError) as exc:
            self.host = HostEnergy(
                available=False, reason=f"RAPL read failed: {exc}", source=str(self.rapl.root)
            )

    def stop(self) -> None:
        if self.monitor is not None:
            self.end_if_open()
            self.monitor.stop()

    def end_if_open(self) -> None:
        try:
            self.end()
        except Exception as exc:  # a window never begun (interrupted during idle baseline)
            log.debug("no energy window to close: %s", exc)

    def section(self) -> EnergySection:
        """The result's `energy` section (per-request figures are the result's: they divide by its
        summary's counts)."""
        sec = self._gpu_section()
        sec.host = self.host
        return sec

    def _gpu_section(self) -> EnergySection:
        if self.monitor is None or self.window is None:
            return EnergySection.unavailable(self.reason or "no measured window (run interrupted early)")
        window = self.window
        try:
            return EnergySection(
                available=True,
                method="NVML total-energy counter deltas over the measured window "
                "(integrated instant power only where a GPU lacks the counter: see each GPU's method)",
                window=window.span(),
                idle_seconds=self.idle_seconds,
                gpus=[
                    GpuEnergy.of(
                        window.gpus[g],
                        role=self.roles.get(g, "serving"),
                        idle_power_w=(self.idle_w or {}).get(g),
                    )
                    for g in self.gpu_ids
                ],
                monitor=convert(
                    MonitorInfo.strip(self.monitor.to_json()), MonitorInfo, "the monitor's export"
                ),
                timeline=convert(self.monitor.timeline(TIMELINE_POINTS), PowerTimeline, "the power timeline"),
                power_csv=self.csv_path.name,
            )
        except (SchemaError, KeyError) as exc:  # the monitor changed shape: say so, keep the run
            return EnergySection.unavailable(f"energy measured but not recorded: {exc}; see {self.csv_path}")

"""The host's energy over the measured window: CPU package and DRAM from RAPL (monitor.rapl).

Reported beside the GPUs' energy, never added to it. Without readable RAPL counters (a VM, a host
without the driver, counters readable by root only) `available` is false and `reason` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.schema.base import computed


@dataclass(slots=True, kw_only=True)
class RaplZone:
    """One RAPL zone's energy over the window. kind: package | dram | core | uncore | psys (the platform:
    it contains the packages, so it is never summed with them)."""

    zone: str  # the powercap directory, e.g. intel-rapl:0:1
    name: str  # its `name` file, e.g. package-0, dram
    kind: str
    package: int | None = None
    energy_j: float | None = None
    wraps: int = 0  # counter wrap-arounds seen (and corrected) in the window


@dataclass(slots=True, kw_only=True)
class HostEnergy:
    """RAPL energy of the host over the same window as the GPUs'."""

    available: bool
    reason: str | None = None
    source: str = "/sys/class/powercap"
    duration_s: float | None = None
    zones: list[RaplZone] = field(default_factory=list)

    def _sum(self, kind: str) -> float | None:
        vals = [z.energy_j for z in self.zones if z.kind == kind]
        if not self.available or not vals or any(v is None for v in vals):
            return None
        return float(sum(v for v in vals if v is not None))

    @computed
    def package_j(self) -> float | None:
        """CPU packages (cores, caches, uncore; DRAM is apart), summed over sockets."""
        return self._sum("package")

    @computed
    def dram_j(self) -> float | None:
        return self._sum("dram")

    @computed
    def avg_power_w(self) -> float | None:
        """(package + DRAM) / window; DRAM counted as 0 where the host has no DRAM zone."""
        pkg = self.package_j
        if pkg is None or not self.duration_s:
            return None
        return (pkg + (self.dram_j or 0.0)) / self.duration_s

"""A run's energy: per GPU over the measured window, from the monitor (monitor.PowerMonitor).

Stored once: each GPU's window (counter joules, times, samples; the monitor's own window types,
monitor.energy's `EnergyWindow` and `GpuWindow`, which `GpuEnergy` extends) and its idle power; the
attribution of that energy to idle and to each request's phases; the host's RAPL energy over the same
window. Computed from those (written, never read back): the static (idle power x window) / dynamic (the
rest) split, the prefill and decode phases, sums over GPUs. Per-request and per-token figures need the
run's counts, so `RunResult` writes them, dividing by its summary's `completed` requests and tokens.
Without a driver `available` is false and `reason` says why: energy is never zero for "not measured".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from experiments.schema.attribution import EnergyAttribution
from experiments.schema.base import OMIT_EMPTY, computed
from experiments.schema.host import HostEnergy
from monitor.energy import EnergyWindow, GpuWindow

Scope = Literal["all_gpus", "serving_gpus"]
SCOPES: tuple[Scope, ...] = ("all_gpus", "serving_gpus")
IDLE_ROLE = "idle"


def _sum(values: Iterable[float | None]) -> float | None:
    """The sum, or None when a value is missing (a partial sum would read as a measurement)."""
    vals = list(values)
    if not vals or any(v is None for v in vals):
        return None
    return float(sum(vals))  # type: ignore[arg-type]


@dataclass(slots=True, kw_only=True)
class GpuEnergy(GpuWindow):
    """One GPU over the measured window: the monitor's window of it (monitor.energy.GpuWindow: joules,
    times, samples, `method` counter or integrated power) with the run's view of the GPU.

    `index` is the NVML index; on a cluster run the GPU's position across nodes (node_index is NVML's).
    """

    role: str = "serving"  # prefill | decode | serving | idle
    node: str | None = field(default=None, metadata=OMIT_EMPTY)  # its Ray node (cluster runs only)
    node_index: int | None = field(default=None, metadata=OMIT_EMPTY)  # its NVML index on that node
    idle_power_w: float | None = None  # measured before the run, with the servers loaded and idle

    @classmethod
    def of(cls, window: GpuWindow, **run_view: Any) -> GpuEnergy:
        """`window` as the result's GPU, with the run's fields (`role`, `idle_power_w`, ...) and any
        window field to override (`index`, ...) given by name."""
        return cls(**{**{f.name: getattr(window, f.name) for f in fields(GpuWindow)}, **run_view})

    @computed
    def static_j(self) -> float | None:
        """Idle power x the window: what the GPU would have drawn doing nothing."""
        if self.idle_power_w is None or self.energy_j is None:
            return None
        return self.idle_power_w * self.duration_s

    @computed
    def dynamic_j(self) -> float | None:
        """Energy above idle."""
        static = self.static_j
        return None if static is None or self.energy_j is None else self.energy_j - static


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyTotals:
    """Sums over a set of GPUs (None where one GPU lacks the value)."""

    gpus: list[int]
    energy_j: float | None
    static_j: float | None
    dynamic_j: float | None
    avg_power_w: float | None
    peak_power_w: float | None

    @classmethod
    def of(cls, gpus: list[GpuEnergy]) -> EnergyTotals:
        return cls(
            gpus=[g.index for g in gpus],
            energy_j=_sum(g.energy_j for g in gpus),
            static_j=_sum(g.static_j for g in gpus),
            dynamic_j=_sum(g.dynamic_j for g in gpus),
            avg_power_w=_sum(g.avg_power_w for g in gpus),
            peak_power_w=max((g.peak_power_w or 0.0 for g in gpus), default=None),
        )

    def per(self, count: float | None, part: str = "energy_j") -> float | None:
        """`part` ("energy_j", "static_j" or "dynamic_j") divided by `count` (None when either is)."""
        value = getattr(self, part)
        return value / count if value is not None and count else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyPhases:
    """Disaggregated runs: the prefill GPUs' energy is the prefill phase, the decode GPUs' the decode."""

    prefill_j: float | None
    decode_j: float | None
    note: str = "prefill phase = prefill GPU(s), decode phase = decode GPU(s), over the window"


@dataclass(slots=True, kw_only=True)
class PowerTimeline:
    """Power per GPU over the whole monitored time, binned for the result file (W; None = no sample)."""

    epoch_ns: list[int] = field(default_factory=list)
    power_w: dict[str, list[float | None]] = field(default_factory=dict)
    source: str | None = None  # which NVML power value
    points: int = 0
    samples: int = 0
    bin_s: float | None = None


@dataclass(slots=True, kw_only=True)
class MonitorGpu:
    """One monitored GPU as the monitor saw it: static facts and how sampling went."""

    name: str | None = None
    power_limit_w: float | None = None
    memory_total_bytes: int | None = None
    graphics_clock_mhz: int | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    pstate: int | None = None
    temperature_c: int | None = None
    samples_ok: int = 0
    samples_missing: int = 0
    missing_spans: list[dict[str, int]] = field(default_factory=list)
    unsupported_reads: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class MonitorInfo:
    """The monitor's own account (monitor.PowerMonitor.to_json) without what the section already holds
    (its windows, idle power and static/dynamic split)."""

    backend: str | None = None
    driver_version: str | None = None
    gpu_ids: list[int] = field(default_factory=list)
    gpus: dict[str, MonitorGpu] = field(default_factory=dict)
    interval_s: float | None = None
    reads: list[str] = field(default_factory=list)
    started_epoch_ns: int | None = None
    duration_s: float | None = None
    sample_count: int = 0
    expected_samples: int = 0
    achieved_sample_fraction: float | None = None
    achieved_sample_rate_hz: float | None = None
    skipped_ticks: int = 0
    read_latency_us: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    energy_counter_wrap_mj: str | None = None
    csv_path: str | None = None
    csv_columns: list[str] = field(default_factory=list)
    csv_units: dict[str, str] = field(default_factory=dict)

    # Keys of the monitor's export that the energy section stores elsewhere (once).
    DUPLICATES = ("windows", "idle_power_w", "static_dynamic_split")

    @classmethod
    def strip(cls, exported: dict[str, Any]) -> dict[str, Any]:
        """The monitor's export without the keys the section holds itself."""
        return {k: v for k, v in exported.items() if k not in cls.DUPLICATES}


@dataclass(slots=True, kw_only=True)
class NodeClock:
    """One node of a cluster run (--cluster): its monitor, and its clock's offset to the runner's.

    Every epoch time the node reported (its GPUs' windows, timeline) was moved onto the runner's clock by
    `clock_offset_ns` (node - runner), measured by round trips: the truth lies within +- `offset_bound_ns`.
    """

    node: str  # Ray node id
    address: str | None = None
    host: str | None = None
    gpus: list[int] = field(default_factory=list)  # the section's indices of its GPUs
    clock_offset_ns: int = 0
    offset_bound_ns: int = 0
    offset_rtt_ns: int = 0
    power_csv: str | None = None  # on that node


@dataclass(slots=True, kw_only=True)
class EnergySection:
    """The result's `energy`: per-GPU windows with idle power, the monitor's account, a power timeline."""

    available: bool
    reason: str | None = None  # why not available
    method: str | None = None
    window: EnergyWindow | None = None
    idle_seconds: float | None = None  # length of the idle baseline (None: not measured)
    gpus: list[GpuEnergy] = field(default_factory=list)
    monitor: MonitorInfo | None = None
    timeline: PowerTimeline | None = None
    power_csv: str | None = None  # file name next to result.json
    attribution: EnergyAttribution | None = None  # idle / per request and phase (experiments.attribution)
    host: HostEnergy | None = None  # the host's CPU package and DRAM (RAPL), beside the GPUs, never in them
    nodes: list[NodeClock] = field(default_factory=list, metadata=OMIT_EMPTY)  # cluster runs: per node

    @classmethod
    def unavailable(cls, reason: str) -> EnergySection:
        return cls(available=False, reason=reason)

    def gpu(self, index: int) -> GpuEnergy | None:
        return next((g for g in self.gpus if g.index == index), None)

    def scope(self, scope: Scope) -> list[GpuEnergy]:
        """The GPUs of a scope: all monitored, or those serving (the idle GPU of a single instance left
        out)."""
        if scope == "all_gpus":
            return list(self.gpus)
        if scope == "serving_gpus":
            return [g for g in self.gpus if g.role != IDLE_ROLE]
        raise ValueError(f"unknown energy scope {scope!r}; use one of {', '.join(SCOPES)}")

    def totals(self, scope: Scope = "all_gpus") -> EnergyTotals | None:
        """Sums over the GPUs of `scope`; None without energy."""
        return EnergyTotals.of(self.scope(scope)) if self.available else None

    @computed
    def complete(self) -> bool | None:
        """Whether every GPU's window had all its samples (None without energy)."""
        return all(g.complete for g in self.gpus) if self.available else None

    @computed
    def phases(self) -> EnergyPhases | None:
        """Prefill and decode energy of a disaggregated run (None when no GPU has those roles)."""
        roles = {g.role for g in self.gpus}
        if not self.available or not {"prefill", "decode"} <= roles:
            return None
        return EnergyPhases(
            prefill_j=_sum(g.energy_j for g in self.gpus if g.role == "prefill"),
            decode_j=_sum(g.energy_j for g in self.gpus if g.role == "decode"),
        )

"""Energy of a run served across nodes (--cluster): a monitor per node, on the runner's clock.

The runner's `EnergyMeter` for a serving setup placed through Ray: one `monitor.node.NodeMonitor` actor
on every node that holds instances samples that node's GPUs (the GPUs Ray gave its instances). Each
node's clock offset to the runner's is measured by round trips (monitor.clock) when its monitor starts;
every time the node reports is moved onto the runner's clock by it, so windows and timelines of all nodes
line up with the client's records. The section numbers GPUs across nodes (index 0..n-1, by node) and
names each GPU's node and NVML index there, so the same analysis reads it.

CPU runs have no GPU: with the simulated backend (tests) each instance stands for one simulated GPU of
its node, numbered from 0 per node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.energy import TIMELINE_POINTS, EnergyMeter
from experiments.ray_cluster import connect, on_node
from experiments.schema import (
    EnergySection,
    EnergyWindow,
    GpuEnergy,
    MonitorInfo,
    NodeClock,
    PowerTimeline,
    SchemaError,
    ServingSetup,
    convert,
)
from monitor.clock import ClockOffset, measure_offset
from monitor.energy import WindowResult
from monitor.node import NodeMonitor, shift_epochs


@dataclass
class _Node:
    """One monitored node: its GPUs (NVML index, role, the section's index) and, once started, its
    actor and clock offset."""

    node_id: str
    address: str | None
    gpus: list[tuple[int, str, int]]
    actor: Any = None
    host: str | None = None
    offset: ClockOffset | None = None
    window: WindowResult | None = None
    idle_w: dict[int, float | None] | None = None
    export: dict[str, Any] | None = None


def node_gpus(setup: ServingSetup, backend: str) -> list[_Node]:
    """The nodes that hold the setup's instances and their GPUs, numbered across nodes in the order the
    setup first names each node (a node's own GPUs by NVML index): the same run numbers its GPUs the same
    way on every cluster, whatever ids Ray draws for the nodes."""
    nodes: dict[str, _Node] = {}
    for inst in setup.instances:
        if inst.node is None:
            continue
        node = nodes.setdefault(inst.node, _Node(inst.node, inst.node_address, []))
        ids = [int(g) for g in inst.gpu.split(",")] if inst.gpu else []
        if not ids and backend == "sim":  # a CPU instance stands for one simulated GPU
            ids = [len(node.gpus)]
        node.gpus += [(g, inst.role, -1) for g in ids]
    ordered = list(nodes.values())  # the setup's order (prefill before decode), not the node ids'
    k = 0
    for node in ordered:
        node.gpus = [(g, role, (k := k + 1) - 1) for g, role, _ in sorted(node.gpus)]
    return [n for n in ordered if n.gpus]


class ClusterEnergyMeter(EnergyMeter):
    """EnergyMeter's interface over one NodeMonitor actor per node (see the module docstring); its
    `monitor` stays None (the monitors are the nodes' actors)."""

    def __init__(self, setup: ServingSetup, interval_s: float, backend: str, csv_path: Path) -> None:
        self.nodes = node_gpus(setup, backend)
        gpus = [k for n in self.nodes for _, _, k in n.gpus]
        roles = {k: role for n in self.nodes for _, role, k in n.gpus}
        super().__init__(gpus, roles, interval_s, backend, csv_path)
        self.address = setup.cluster or "auto"
        if not gpus and backend != "none":
            self.reason = "no GPUs on the cluster's instances (a CPU run; --monitor sim simulates them)"
        self.started = False
        self.ended = False  # the nodes' windows are closed (each node's is its own: _Node.window)
        self.local_ns: dict[str, tuple[int, int]] = {}  # begin/end: (epoch, monotonic) on this host

    def start(self) -> None:
        if self.reason:
            return
        ray = connect(self.address)
        try:
            for node in self.nodes:
                csv = self.csv_path.with_name(f"power-{node.node_id[:8]}.csv")
                node.actor = (
                    ray.remote(NodeMonitor)
                    .options(num_cpus=0, scheduling_strategy=on_node(node.node_id), max_concurrency=1)
                    .remote([g for g, _, _ in node.gpus], self.interval_s, self.backend_kind, str(csv))
                )
                node.host = ray.get(node.actor.start.remote())
                actor = node.actor
                node.offset = measure_offset(lambda a=actor: ray.get(a.clock_ns.remote()))
        except Exception as exc:  # the node's monitor failed (no driver there, ...): say so, run on
            where = f"{node.address} ({node.node_id[:8]})"
            self.reason = f"the monitor on node {where} failed: {_first_line(exc)}"
            self._kill()
            return
        self.started = True

    def _all(self, method: str, *args: Any) -> list[Any]:
        ray = connect(self.address)
        return list(ray.get([getattr(n.actor, method).remote(*args) for n in self.nodes]))

    def measure_idle(self, seconds: float) -> None:
        if not self.started:
            return
        for node, idle in zip(self.nodes, self._all("measure_idle", seconds), strict=True):
            node.idle_w = {int(g): w for g, w in idle.items()}
        self.idle_w = {k: (n.idle_w or {}).get(g) for n in self.nodes for g, _, k in n.gpus}
        self.idle_seconds = seconds

    def begin(self) -> None:
        if self.started:
            self.local_ns["begin"] = (time.time_ns(), time.monotonic_ns())
            self._all("begin_window", "measured")

    def end(self) -> None:
        if self.started and not self.ended:
            for node, window in zip(self.nodes, self._all("end_window", "measured"), strict=True):
                node.window = window
            self.local_ns["end"] = (time.time_ns(), time.monotonic_ns())
            self.ended = True

    def stop(self) -> None:
        if not self.started:
            return
        self.end_if_open()
        try:
            for node, out in zip(self.nodes, self._all("stop", TIMELINE_POINTS), strict=True):
                node.export = out
        finally:
            self._kill()

    def _kill(self) -> None:
        ray = connect(self.address)
        for node in self.nodes:
            if node.actor is not None:
                ray.kill(node.actor)
                node.actor = None

    def section(self) -> EnergySection:
        if not self.started or not self.ended or "begin" not in self.local_ns:
            return EnergySection.unavailable(self.reason or "no measured window (run interrupted early)")
        try:
            return self._section()
        except (SchemaError, KeyError) as exc:
            return EnergySection.unavailable(f"energy measured but not recorded: {exc}")

    def _section(self) -> EnergySection:
        local = {n.node_id: _window(n).shifted(-_offset(n).offset_ns) for n in self.nodes}
        (b_epoch, b_mono), (e_epoch, e_mono) = self.local_ns["begin"], self.local_ns["end"]
        start = min(w.start_epoch_ns for w in local.values())
        end = max(w.end_epoch_ns for w in local.values())
        window = EnergyWindow(
            name="measured",
            start_epoch_ns=start,
            end_epoch_ns=end,
            start_monotonic_ns=b_mono + (start - b_epoch),  # this host's monotonic clock
            end_monotonic_ns=e_mono + (end - e_epoch),
            duration_s=(end - start) / 1e9,
            interval_s=self.interval_s,
        )
        gpus = [
            GpuEnergy.of(
                local[node.node_id].gpus[g],
                start_monotonic_ns=None,  # the node's own clock
                end_monotonic_ns=None,
                index=k,
                role=role,
                node=node.node_id,
                node_index=g,
                idle_power_w=(node.idle_w or {}).get(g),
            )
            for node in self.nodes
            for g, role, k in node.gpus
        ]
        return EnergySection(
            available=True,
            method="NVML total-energy counter deltas over the measured window, per node (each node's "
            "monitor; its times moved onto the runner's clock by the measured offset, see nodes)",
            window=window,
            idle_seconds=self.idle_seconds,
            gpus=gpus,
            monitor=self._monitor_info(),
            timeline=self._timeline(),
            nodes=[
                NodeClock(
                    node=n.node_id,
                    address=n.address,
                    host=n.host,
                    gpus=[k for _, _, k in n.gpus],
                    clock_offset_ns=_offset(n).offset_ns,
                    offset_bound_ns=_offset(n).bound_ns,
                    offset_rtt_ns=_offset(n).rtt_ns,
                    power_csv=str(self.csv_path.with_name(f"power-{n.node_id[:8]}.csv")),
                )
                for n in self.nodes
            ],
        )

    def _monitor_info(self) -> MonitorInfo | None:
        """The first node's monitor account, its GPUs those of every node (by the section's index)."""
        exports = [_on_runner_clock(n, "export") for n in self.nodes]
        if not all(exports):
            return None
        info = MonitorInfo.strip(exports[0])
        info["gpus"] = {
            str(k): e.get("gpus", {}).get(str(g))
            for n, e in zip(self.nodes, exports, strict=True)
            for g, _, k in n.gpus
            if e.get("gpus", {}).get(str(g)) is not None
        }
        info["gpu_ids"] = [k for n in self.nodes for _, _, k in n.gpus]
        for key in ("sample_count", "expected_samples", "skipped_ticks"):
            info[key] = sum(int(e.get(key) or 0) for e in exports)
        info["csv_path"] = None
        return convert(info, MonitorInfo, "the node monitors' exports")

    def _timeline(self) -> PowerTimeline | None:
        """Every node's timeline on the runner's clock, sampled at the first node's time bins."""
        lines = [_on_runner_clock(n, "timeline") for n in self.nodes]
        if not lines or not all(line.get("epoch_ns") for line in lines):
            return None
        axis = np.asarray(lines[0]["epoch_ns"], dtype=np.int64)
        power: dict[str, list[float | None]] = {}
        for node, line in zip(self.nodes, lines, strict=True):
            times = np.asarray(line["epoch_ns"], dtype=np.int64)
            after = np.clip(np.searchsorted(times, axis), 0, len(times) - 1)
            before = np.clip(after - 1, 0, len(times) - 1)
            nearest = np.where(np.abs(times[before] - axis) < np.abs(times[after] - axis), before, after)
            for g, _, k in node.gpus:
                values = line["power_w"].get(str(g)) or []
                power[str(k)] = [values[i] if i < len(values) else None for i in nearest]
        first = lines[0]
        return PowerTimeline(
            epoch_ns=[int(t) for t in axis],
            power_w=power,
            source=first.get("source"),
            points=len(axis),
            samples=sum(int(line.get("samples") or 0) for line in lines),
            bin_s=first.get("bin_s"),
        )


def _window(node: _Node) -> WindowResult:
    if node.window is None:
        raise KeyError(f"node {node.node_id[:8]} has no measured window (its monitor never ended one)")
    return node.window


def _offset(node: _Node) -> ClockOffset:
    if node.offset is None:
        raise KeyError(f"node {node.node_id[:8]} has no clock offset (its monitor never started)")
    return node.offset


def _on_runner_clock(node: _Node, part: str) -> dict[str, Any]:
    """The node's export or timeline with its times on the runner's clock."""
    return dict(shift_epochs((node.export or {}).get(part) or {}, -_offset(node).offset_ns))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return next((line for line in reversed(text) if line.strip()), type(exc).__name__)[:300]

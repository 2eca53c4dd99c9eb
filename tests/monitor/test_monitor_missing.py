"""A GPU lost mid-run: its samples are marked missing, sampling goes on, the window is incomplete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from monitor import PowerMonitor, SimulatedNvmlBackend, window_json
from monitor.clock import VirtualClock


def wait_until(sim: SimulatedNvmlBackend, t: float) -> None:
    """Sleep on the simulator's virtual clock until its time is `t`."""
    sim.clock.sleep(t - sim.now())


def test_gpu_lost_mid_window(tmp_path: Path) -> None:
    sim = SimulatedNvmlBackend(
        clock=VirtualClock(), n_gpus=2, power_w=lambda g, t: 250.0, lost={1: [(0.6, 1.2)]}
    )
    csv_path = tmp_path / "power.csv"
    with PowerMonitor([0, 1], 0.02, sim, csv_path=csv_path) as mon:
        wait_until(sim, 0.2)
        mon.begin_window("measured")
        wait_until(sim, 1.6)
        window = mon.end_window("measured")
    lost, fine = window.gpus[1], window.gpus[0]
    assert fine.complete and fine.failed_samples == 0
    assert not lost.complete
    assert not window.complete
    assert lost.failed_samples == 30  # the samples at 0.60, 0.62, ..., 1.18 s: 0.6 s of 20 ms samples
    assert "GPU is lost" in lost.note
    assert lost.missing_samples >= lost.failed_samples - 2
    # The counter answered again at the end, so the energy is still measured, but flagged.
    assert lost.energy_j == pytest.approx(250.0 * lost.duration_s, rel=0.005)

    samples = mon.samples()
    lost_times = [
        sim.sim_time_of(t)
        for t, bad in zip(samples.gpu_monotonic_ns[:, 1], samples.failed[:, 1], strict=True)
        if bad
    ]
    assert min(lost_times) >= 0.59 and max(lost_times) <= 1.21
    after = [sim.sim_time_of(t) for t in samples.gpu_monotonic_ns[:, 1]]
    assert max(after) > 1.4  # sampling went on after the loss

    summary = mon.to_json()
    spans = summary["gpus"]["1"]["missing_spans"]
    assert len(spans) == 1 and spans[0]["count"] == summary["gpus"]["1"]["samples_missing"]
    assert summary["gpus"]["0"]["samples_missing"] == 0
    json.dumps(summary, allow_nan=False)

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    missing_rows = [r for r in rows if r["gpu_1_missing"] == "1"]
    assert len(missing_rows) == summary["gpus"]["1"]["samples_missing"]
    assert all(r["gpu_1_power"] == "" and r["gpu_0_power"] != "" for r in missing_rows)


def test_gpu_lost_at_window_end_gives_no_energy() -> None:
    sim = SimulatedNvmlBackend(
        clock=VirtualClock(), n_gpus=1, power_w=lambda g, t: 250.0, lost={0: [(0.7, 100.0)]}
    )
    with PowerMonitor([0], 0.02, sim) as mon:
        wait_until(sim, 0.2)
        mon.begin_window("measured")
        wait_until(sim, 1.0)
        window = mon.end_window("measured")
    g = window.gpus[0]
    assert g.energy_j is None and g.avg_power_w is None
    assert not g.complete
    assert "read failed at window end" in g.note
    json.dumps(window_json(window), allow_nan=False)

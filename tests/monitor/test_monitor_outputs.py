"""CSV columns, JSON summary, timeline and latency stats of a PowerMonitor run."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest

from monitor import PowerMonitor, SimulatedNvmlBackend
from monitor.clock import VirtualClock
from monitor.csv_io import read_power_csv
from monitor.simulated import H200_ENERGY_READ_S

EXPECTED_HEADER = [
    "timestamp", "datetime",
    "gpu_0_power", "gpu_0_utilization", "gpu_0_temperature", "gpu_0_memory_used", "gpu_0_memory_total",
    "gpu_0_graphics_clock", "gpu_0_memory_clock",
    "gpu_1_power", "gpu_1_utilization", "gpu_1_temperature", "gpu_1_memory_used", "gpu_1_memory_total",
    "gpu_1_graphics_clock", "gpu_1_memory_clock",
    "gpu_0_energy_mj", "gpu_1_energy_mj",
    "gpu_0_power_instant", "gpu_0_power_average", "gpu_0_memory_utilization", "gpu_0_sm_clock",
    "gpu_0_throttle_reasons", "gpu_0_pstate", "gpu_0_missing",
    "gpu_1_power_instant", "gpu_1_power_average", "gpu_1_memory_utilization", "gpu_1_sm_clock",
    "gpu_1_throttle_reasons", "gpu_1_pstate", "gpu_1_missing",
    "epoch_ns", "monotonic_ns",
]  # fmt: skip

START_EPOCH_S = 1_800_000_000.0
READS = ["power", "power_instant", "power_average", "energy", "utilization", "memory", "temperature",
         "graphics_clock", "sm_clock", "mem_clock", "throttle_reasons", "pstate"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[PowerMonitor, Path]:
    csv_path = tmp_path_factory.mktemp("out") / "power.csv"
    # Virtual time from epoch 1.8e9 s; every read takes 0.1 ms, an energy read 3.5 ms more.
    sim = SimulatedNvmlBackend(clock=VirtualClock(epoch_s=START_EPOCH_S), n_gpus=2, read_latency_s=1e-4)
    with PowerMonitor([0, 1], 0.02, sim, csv_path=csv_path) as mon:
        mon.measure_idle(0.3)
        mon.begin_window("measured")
        sim.clock.sleep(1.0)
        mon.end_window("measured")
    return mon, csv_path


def test_csv_columns_and_values(run: tuple[PowerMonitor, Path]) -> None:
    mon, csv_path = run
    with csv_path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header == EXPECTED_HEADER
    assert len(rows) == len(mon.samples()) > 20
    first = dict(zip(header, rows[0], strict=True))
    ts = float(first["timestamp"])
    # The first sample is taken as the monitor starts, after its 2 x 8 static reads of 0.1 ms each.
    assert ts == pytest.approx(START_EPOCH_S + 0.0016, abs=1e-6)
    assert datetime.fromisoformat(first["datetime"]).timestamp() == pytest.approx(ts, abs=0.001)
    assert int(first["epoch_ns"]) / 1e9 == pytest.approx(ts, abs=1e-5)
    assert float(first["gpu_0_power"]) == pytest.approx(75.0)  # demo trace is idle at first
    assert float(first["gpu_0_memory_total"]) == 141 * 1024  # MiB
    counter = [r[header.index("gpu_0_energy_mj")] for r in rows]
    assert counter[0] != "" and counter[-1] != ""  # read at the first and the last sample
    read = [int(c) for c in counter if c != ""]
    assert read == sorted(read) and read[-1] > read[0]  # a total-energy counter: it only grows here
    energies = [int(v) for v in counter if v != ""]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    assert len(energies) < len(rows) / 5  # not on every 20 ms sample: every ~1 s
    data = read_power_csv(csv_path)
    assert data.gpu_ids == [0, 1] and len(data) == len(rows)


def test_json_summary_is_complete_and_serializable(run: tuple[PowerMonitor, Path]) -> None:
    mon, csv_path = run
    summary = json.loads(json.dumps(mon.to_json(), allow_nan=False))
    for key in ("backend", "driver_version", "gpus", "interval_s", "sample_count", "expected_samples",
                "achieved_sample_fraction", "achieved_sample_rate_hz", "read_latency_us", "windows",
                "idle_power_w", "csv_columns"):  # fmt: skip
        assert key in summary, key
    assert summary["backend"] == "sim"
    assert summary["csv_columns"] == EXPECTED_HEADER
    assert summary["csv_path"] == str(csv_path)
    gpu0 = summary["gpus"]["0"]
    assert gpu0["name"] == "Simulated NVIDIA H200" and gpu0["power_limit_w"] == 700.0
    assert {"graphics_clock_mhz", "sm_clock_mhz", "mem_clock_mhz", "pstate"} <= gpu0.keys()
    assert 0 < summary["achieved_sample_fraction"] <= 1.0
    assert list(summary["read_latency_us"]) == READS
    for read, stats in summary["read_latency_us"].items():
        took_us = 100.0 + (H200_ENERGY_READ_S * 1e6 if read == "energy" else 0.0)  # as planted
        assert stats["n"] > 0 and stats["p50_us"] == stats["p99_us"] == stats["max_us"] == took_us
    measured = summary["windows"]["measured"]
    assert measured["gpus"]["1"]["method"] == "energy_counter"
    assert set(summary["static_dynamic_split"]["measured"]) == {"0", "1"}


def test_timeline_is_downsampled_and_keeps_mean_power(run: tuple[PowerMonitor, Path]) -> None:
    mon, _ = run
    full = mon.timeline(10_000)
    small = mon.timeline(7)
    assert full["points"] == len(mon.samples())
    assert small["points"] <= 7
    assert len(small["epoch_ns"]) == len(small["power_w"]["0"]) == small["points"]
    assert small["epoch_ns"] == sorted(small["epoch_ns"])
    assert small["source"] == "power_instant_mw"
    values = [v for v in full["power_w"]["0"] if v is not None]
    assert max(small["power_w"]["0"]) <= max(values) + 0.01
    json.dumps(small, allow_nan=False)


def test_reads_subset_leaves_the_others_null(tmp_path: Path) -> None:
    sim = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=1)
    with PowerMonitor([0], 0.02, sim, csv_path=tmp_path / "p.csv", reads=["power", "energy"]) as mon:
        sim.clock.sleep(0.2)
    data = read_power_csv(tmp_path / "p.csv")
    assert (data.gpu(0, "power") > 0).all()
    assert all(x != x for x in data.gpu(0, "temperature"))  # NaN: not read
    assert mon.to_json()["read_latency_us"]["temperature"]["n"] == 0
    with pytest.raises(ValueError, match="unknown reads"):
        PowerMonitor([0], 0.1, sim, reads=["powr"])


def test_torn_last_csv_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "torn.csv"
    path.write_text("timestamp,gpu_0_power\n1.0,100\n2.0,110\n3.0")
    data = read_power_csv(path)
    assert list(data.gpu(0, "power")) == [100.0, 110.0]

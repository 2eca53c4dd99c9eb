"""Plots and report from a real power CSV; the bench and GPU-validation scripts on the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.validate_gpu import validate
from monitor import PowerMonitor, SimulatedNvmlBackend
from monitor.clock import VirtualClock
from monitor.csv_io import read_power_csv
from monitor.energy import read_window, window_json
from monitor.plot import build_figures, plot_power_csv
from monitor.report import power_report, report_text

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def power_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    path = tmp_path_factory.mktemp("plot") / "power.csv"
    sim = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=2)
    with PowerMonitor([0, 1], 0.02, sim, csv_path=path) as mon:
        sim.clock.sleep(1.6)  # the demo trace turns busy at 1 s
    first, last = (int(t) for t in mon.samples().gpu_monotonic_ns[[0, -1], 0])
    energy_from_samples = mon.integrate_power_j(0, first, last)
    assert energy_from_samples is not None
    return path, energy_from_samples


def test_plots_written_with_expected_axes(power_csv: tuple[Path, float], tmp_path: Path) -> None:
    path, _ = power_csv
    paths = plot_power_csv(path, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "power_gpu_0.png",
            "power_gpu_1.png",
            "power_all_gpus.png",
            "utilization_vs_power.png",
            "temperature.png",
        ]
    )
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000

    figs = build_figures(read_power_csv(path))
    power_ax, util_ax = figs["power_gpu_0"].axes
    assert (power_ax.get_xlabel(), power_ax.get_ylabel()) == ("Time (s)", "Power (W)")
    assert util_ax.get_ylabel() == "GPU utilization (%)"
    all_ax = figs["power_all_gpus"].axes[0]
    assert [line.get_label() for line in all_ax.get_lines()] == ["GPU 0", "GPU 1", "total"]
    scatter_ax = figs["utilization_vs_power"].axes[0]
    assert scatter_ax.get_xlabel() == "GPU utilization (%)"
    assert any("trend" in line.get_label() for line in scatter_ax.get_lines())
    assert figs["temperature"].axes[0].get_ylabel() == "Temperature (°C)"


def test_report_energy_from_counter_column(power_csv: tuple[Path, float]) -> None:
    path, integrated_j = power_csv
    reports = power_report(read_power_csv(path))
    r0 = reports[0]
    assert r0.energy_method == "energy_counter"
    # Counter steps every 100 ms, so it trails the sampled integral by at most ~one step of energy.
    assert r0.energy_j == pytest.approx(integrated_j, abs=0.1 * 700 + 1)
    assert 75.0 <= r0.mean_power_w <= r0.max_power_w
    assert r0.missing_samples == 0 and r0.duration_s > 1.4


def test_plot_cli_writes_pngs_and_report(power_csv: tuple[Path, float], tmp_path: Path) -> None:
    path, _ = power_csv
    report = tmp_path / "report.txt"
    cmd = [sys.executable, "-m", "monitor.plot", str(path), "--output-dir", str(tmp_path / "p"), "--report",
           str(report), "--no-show"]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert "GPU 0: mean" in text and "GPU 1: mean" in text and "total energy" in text
    assert len(list((tmp_path / "p").glob("*.png"))) == 5
    bad = subprocess.run(
        [sys.executable, "-m", "monitor.plot", str(tmp_path / "missing.csv"), "--no-show"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def test_validate_gpu_script_on_the_simulator(tmp_path: Path) -> None:
    out = tmp_path / "validate.json"
    cmd = [sys.executable, "-m", "bench.validate_gpu", "--backend", "sim", "--seconds", "2",
           "--warmup", "1.2", "--probe", "0.5", "--interval", "0.05", "--json", str(out)]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    # The command line end to end on the system clock (how much it samples depends on the host's load:
    # the numbers are checked on virtual time below).
    for gpu in ("0", "1"):
        g = report["gpus"][gpu]
        assert g["counter_energy_j"] > 0 and g["integrated_power_usage_energy_j"] > 0
        assert g["name"] and g["power_limit_w"] == 700.0
    assert report["read_latency_us"]["energy"]["n"] > 0
    assert "NVML read latency" in result.stdout


def test_validate_gpu_numbers_on_virtual_time() -> None:
    """GPU 1 draws a constant 400 W; the simulated counter steps every 100 ms (40 J a step) and costs
    3.5 ms a read. A 2 s window opens and closes on counter steps, so it holds a whole number of steps
    (2.0-2.2 s) and the counter's joules are 400 W x that; the samples' integral is 400 W x the span of
    the window's own timestamps; every 50 ms tick is sampled."""
    sim = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=2, power_w=lambda g, t: 300.0 + 100 * g)
    report = validate(PowerMonitor([0, 1], 0.05, sim), 2.0, warmup_s=1.2, probe_s=0.5, progress=False)
    g = report["gpus"]["1"]
    w = g["window"]
    steps = (w["end_energy_mj"] - w["start_energy_mj"]) / 40_000
    assert steps == round(steps) and 20 <= steps <= 22
    assert g["counter_energy_j"] == pytest.approx(40 * steps)
    span_s = (w["end_monotonic_ns"] - w["start_monotonic_ns"]) / 1e9
    assert g["integrated_instant_energy_j"] == pytest.approx(400 * span_s)
    assert abs(g["diff_instant_vs_counter_percent"]) < 0.6  # the span within a 10.5 ms boundary of the steps
    assert g["sample_fraction"] == 1.0 and w["missing_samples"] == 0
    # Polled every 1 ms with 3.5 ms reads: a step is seen within a read of when it happened.
    assert 96.5 <= g["update_period_ms"]["energy_counter"]["median_ms"] <= 103.5
    assert report["gpus"]["0"]["counter_energy_j"] == pytest.approx(300 / 400 * g["counter_energy_j"])


def test_bench_script_prints_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_monitor",
        "--backend",
        "sim",
        "--seconds",
        "0.5",
        "--json",
        str(out),
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["interval_s"] for r in results] == [0.1, 0.01]
    for r in results:
        assert r["samples"] > 0 and r["cpu_percent"] > 0 and 0 < r["achieved_sample_percent"] <= 101
        # A 3.5 ms counter read (the sim's default, like an H200) gets a period of seconds, so the
        # 0.5 s span holds at most one read per GPU, against 5 or 50 power samples.
        assert r["counter_read_every_s"] >= 1.0 and r["counter_reads"] <= 2
        for e in r["energy"].values():
            assert e["method"] == "energy_counter" and e["counter_energy_j"] > 0
            assert e["diff_percent"] is not None
    assert "of a core" in result.stdout and "integrated instant power" in result.stdout


def test_report_leads_with_recorded_windows_and_skips_those_of_another_run(tmp_path: Path) -> None:
    csv_path = tmp_path / "power.csv"
    sim = SimulatedNvmlBackend(
        clock=VirtualClock(), n_gpus=1, power_w=lambda g, t: 150.0, energy_read_cost_s=0.0
    )
    with PowerMonitor([0], 0.02, sim, csv_path=csv_path) as mon:
        mon.begin_window("a")
        sim.clock.sleep(0.5)
        window = mon.end_window("a")
    summary = mon.to_json()
    assert read_window(json.loads(json.dumps(window_json(window)))) == window

    json_path = tmp_path / "power.json"
    json_path.write_text(json.dumps(summary))
    text = report_text(csv_path, None)
    assert f"  GPU 0: {window.gpus[0].describe()}\n" in text
    assert text.index('window "a"') < text.index("all samples in the CSV")

    hour_ns = 3600 * 10**9
    summary["windows"]["a"]["start_epoch_ns"] -= hour_ns
    json_path.write_text(json.dumps(summary))
    text = report_text(csv_path, None)
    assert 'window "a"' not in text and "lie outside this CSV's samples" in text
    with pytest.raises(ValueError, match="cannot read the windows"):
        report_text(csv_path, tmp_path / "missing.json")

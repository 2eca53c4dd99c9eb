"""`python -m monitor` as a subprocess: Ctrl-C/SIGTERM flush, --duration, NVML missing -> exit 2."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import MonitorUnavailable, open_backend
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def nvml_works() -> bool:
    try:
        open_backend("nvml").close()
    except MonitorUnavailable:
        return False
    return True


def monitor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", *args]


def csv_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open() as f:
        return max(0, sum(1 for _ in f) - 1)


def check_outputs(csv_path: Path, json_path: Path) -> dict:
    with csv_path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header[:3] == ["timestamp", "datetime", "gpu_0_power"]
    assert rows and all(len(r) == len(header) for r in rows)  # nothing torn
    summary = json.loads(json_path.read_text())
    assert summary["sample_count"] == len(rows)
    assert summary["csv_columns"] == header
    run = summary["windows"]["run"]["gpus"]
    assert run["0"]["energy_j"] > 0 and run["1"]["energy_j"] > 0
    assert len(summary["timeline"]["epoch_ns"]) > 0
    return summary


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_flushes_csv_and_json(tmp_path: Path, sig: signal.Signals) -> None:
    csv_path, json_path = tmp_path / "power.csv", tmp_path / "power.json"
    args = ["--backend", "sim", "--gpu-ids", "0,1", "--interval", "0.02", "--output", str(csv_path),
            "--json", str(json_path)]  # fmt: skip
    proc = subprocess.Popen(
        monitor_cmd(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # 60 rows of 20 ms samples on disk: at least 1.18 s of sampling, flushed (about once a second).
        wait_for(lambda: proc.poll() is not None or csv_rows(csv_path) >= 60, "60 CSV rows", timeout_s=60)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = check_outputs(csv_path, json_path)
    assert summary["duration_s"] > 1.0
    assert "Traceback" not in err


def test_duration_run_and_default_json_path(tmp_path: Path) -> None:
    csv_path = tmp_path / "sub" / "p.csv"
    args = [
        "--backend",
        "sim",
        "--gpu-ids",
        "0,1",
        "--interval",
        "0.05",
        "--output",
        str(csv_path),
        "--duration",
        "1",
    ]
    result = subprocess.run(monitor_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = check_outputs(csv_path, csv_path.with_suffix(".json"))
    assert summary["interval_s"] == 0.05
    assert "J" in result.stderr  # the closing summary line


def test_open_backend_without_driver_raises_monitor_unavailable() -> None:
    if nvml_works():
        pytest.skip("an NVIDIA driver is present on this machine")
    with pytest.raises(MonitorUnavailable, match=r"^NVML unavailable: .*energy fields will be null$") as info:
        open_backend("nvml")
    assert "libnvidia-ml.so.1" in info.value.reason or "nvidia-ml-py" in info.value.reason
    with pytest.raises(MonitorUnavailable):
        open_backend("auto")
    with pytest.raises(ValueError, match="unknown backend"):
        open_backend("cuda")


def test_cli_without_nvml_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    if nvml_works():
        pytest.skip("an NVIDIA driver is present on this machine")
    csv_path = tmp_path / "p.csv"
    result = subprocess.run(
        monitor_cmd("--duration", "1", "--output", str(csv_path)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: NVML unavailable")
    assert not csv_path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "sim", "--gpu-ids", "0", "--interval", "0.001"], "interval"),
        (["--backend", "sim", "--duration", "-1"], "--duration"),
        (["--backend", "sim", "--duration", "1", "--counter-every", "0.01"], "update period"),
    ],
)
def test_cli_bad_input_is_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        monitor_cmd(*args, "--output", str(tmp_path / "p.csv")),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr


WINDOW_LINE = re.compile(r"^  GPU (\d+): ([\d.]+) J \((\w+)\) from (\S+) to (\S+) \(([\d.]+) s\)$", re.M)


def test_cli_and_plot_report_give_the_same_energy_for_the_same_window(tmp_path: Path) -> None:
    csv_path = tmp_path / "power.csv"
    args = ["--backend", "sim", "--gpu-ids", "0,1", "--interval", "0.05", "--output", str(csv_path),
            "--duration", "1.5"]  # fmt: skip
    cli = subprocess.run(monitor_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    report_path = tmp_path / "report.txt"
    plot_cmd = [sys.executable, "-m", "monitor.plot", str(csv_path), "--output-dir", str(tmp_path / "plots"),
                "--report", str(report_path), "--no-show"]  # fmt: skip
    plot = subprocess.run(plot_cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0, plot.stderr
    report = report_path.read_text()
    cli_windows = WINDOW_LINE.findall(cli.stderr)
    report_windows = WINDOW_LINE.findall(report)
    # Same GPUs, joules, method, start, end and duration, printed by both.
    assert len(cli_windows) == 2 and report_windows == cli_windows
    assert {w[2] for w in cli_windows} == {"energy_counter"}
    assert 'window "run"' in cli.stderr and 'window "run"' in report
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    for gpu, joules, *_ in cli_windows:
        assert float(joules) == pytest.approx(summary["windows"]["run"]["gpus"][gpu]["energy_j"], abs=0.05)
    # The CSV's own span (first to last sample) is reported apart and labelled as such.
    assert "all samples in the CSV, first to last" in report

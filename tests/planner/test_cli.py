"""`python -m planner simulate|search` as a user runs them: tables, JSON, plots, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from planner.illustrative import illustrative_profile

ROOT = Path(__file__).resolve().parents[2]


def planner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(illustrative_profile().save(tmp_path_factory.mktemp("prof") / "h200.json"))


def test_simulate_prints_every_setup_and_rate_and_writes_json_and_plots(
    profile_path: str, tmp_path: Path
) -> None:
    proc = planner(
        "simulate", "--profile", profile_path, "--setup", "single,1P1D", "--setup", "replicas:2",
        "--rates", "4,30", "--slo", "ttft=1000,tpot=50", "--num-requests", "400",
        "--json", str(tmp_path / "sim.json"), "--plot-dir", str(tmp_path / "plots"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not measured" in proc.stderr  # the illustrative profile says what it is
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("single ", "1P1D ", "replicas:2 "))]
    assert len(rows) == 6
    assert "1P1D: highest given rate with attainment >= 90%: 4 req/s = 2.00 req/s per GPU" in proc.stdout
    doc = json.loads((tmp_path / "sim.json").read_text())
    assert len(doc["outcomes"]) == 6 and doc["profile"]["source"] == "illustrative"
    by = {(o["setup"], o["rate"]): o for o in doc["outcomes"]}
    assert by[("1P1D", 30.0)]["attainment"] < 0.9 <= by[("1P1D", 4.0)]["attainment"]
    assert by[("single", 4.0)]["energy"]["j_per_request"] > 0
    assert (tmp_path / "plots" / "attainment.png").stat().st_size > 0
    assert (tmp_path / "plots" / "energy.png").stat().st_size > 0


def test_search_prints_the_best_setups_per_gpu_count(profile_path: str, tmp_path: Path) -> None:
    proc = planner(
        "search", "--profile", profile_path, "--gpus", "2,3", "--slo", "ttft=500,tpot=25", "--top", "2",
        "--num-requests", "300", "--requests-per-gpu", "100", "--json", str(tmp_path / "s.json"),
        "--plot-dir", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [len(doc["best"][g]) for g in ("2", "3")] == [2, 2]
    best = doc["best"]["3"][0]
    assert best["gpus"] == 3 and best["goodput_per_gpu"] > 0 and best["j_per_request"] > 0
    assert f"   3 {best['setup']:<10}" in proc.stdout
    assert (tmp_path / "goodput_per_gpu.png").stat().st_size > 0


def test_simulate_says_when_a_run_is_too_short_for_its_load(profile_path: str) -> None:
    """60 requests of 1024 tokens at 20 req/s: 3 s of arrivals against >= 5 s per request."""
    args = ["simulate", "--profile", profile_path, "--setup", "single", "--input-len", "512"]
    proc = planner(*args, "--output-len", "1024", "--num-requests", "60", "--rates", "2,20")
    assert proc.returncode == 0, proc.stderr
    (note,) = [line for line in proc.stdout.splitlines() if "not a steady state" in line]
    assert note.startswith("  single at 20 req/s: not a steady state: arrivals lasted 3.")


@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (
            ["simulate", "--profile", "nope.json", "--setup", "single", "--rates", "1"],
            2,
            "no profile at nope.json",
        ),
        (["simulate", "--profile", "illustrative", "--setup", "1P", "--rates", "1"], 2, "unknown setup '1P'"),
        (["simulate", "--profile", "illustrative", "--setup", "single"], 2, "give --rates"),
        (["search", "--profile", "illustrative", "--gpus", "4"], 2, "search needs --slo"),
        (["search", "--profile", "illustrative", "--gpus", "4", "--slo", "ttft=fast"], 2, "not a number"),
        (
            ["simulate", "--profile", "illustrative", "--setup", "single", "--rates", "0"],
            2,
            "positive numbers",
        ),
    ],
)
def test_errors_are_one_line(args: list[str], rc: int, message: str) -> None:
    proc = planner(*args)
    assert proc.returncode == rc
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr

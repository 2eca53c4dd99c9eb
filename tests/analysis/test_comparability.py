"""Runs that may not be compared are refused with the differences named; --force compares anyway."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.comparability import NotComparable, check_comparable, differences
from analysis.runs import load_runs
from analysis.setup_sweeps import shape_text
from experiments.schema import GpuInfo, RunResult
from tests.analysis.golden import OTHER, SWEEP, TRAD, cli, derived_run


def test_incomparable_runs_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = cli(TRAD, OTHER, "--output-dir", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: runs are not comparable: model differs")
    assert "Qwen2.5-7B-Instruct" in lines[0] and "--force" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()

    proc = cli(TRAD, OTHER, "--output-dir", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "warning: forced comparison" in proc.stderr
    assert "FORCED comparison (--force)" in (out / "report.md").read_text()


def test_rate_differs_outside_a_sweep_is_refused() -> None:
    proc = cli(TRAD, SWEEP[0], "--no-plots")
    assert proc.returncode == 2
    assert "offered load differs outside a sweep" in proc.stderr


def test_hardware_and_workload_differences_are_named(tmp_path: Path) -> None:
    def on_h100(result: RunResult) -> None:
        result.metadata.gpu_inventory.gpus = [GpuInfo(index=i, name="NVIDIA H100 80GB HBM3") for i in (0, 1)]
        result.metadata.config.workload.input_len = 1024

    other = derived_run(TRAD, tmp_path / "h100", on_h100)
    runs = load_runs([TRAD, other])
    diffs = differences(runs)
    assert any(d.startswith("hardware differs") and "H100" in d for d in diffs)
    assert any(d.startswith("input length differs") and "1024" in d for d in diffs)
    with pytest.raises(NotComparable):
        check_comparable(runs)
    assert check_comparable(runs, force=True) == diffs


def test_a_sweep_may_change_seeds_between_loads_but_not_within_one(tmp_path: Path) -> None:
    def reseed(result: RunResult) -> None:
        result.metadata.config.workload.seed = 9

    assert differences(load_runs(SWEEP)) == []
    runs = load_runs([*SWEEP, derived_run(SWEEP[2], tmp_path / "again", reseed)])
    (diff,) = differences(runs)
    assert diff.startswith("workload seed differs")


def test_a_sweep_may_run_more_requests_at_higher_loads_but_one_load_must_agree(tmp_path: Path) -> None:
    def longer(result: RunResult) -> None:  # a long-request shape keeps arrivals going >= 45 s
        result.metadata.config.workload.num_requests *= 3

    top = derived_run(SWEEP[-1], tmp_path / "top", longer)
    grown = load_runs([*SWEEP[:-1], top])
    assert differences(grown) == []
    counts = sorted(r.config.workload.num_requests for r in grown)
    assert f"{counts[0]}-{counts[-1]} requests per rate" in shape_text(grown)  # the frontier's header
    assert f" {counts[0]} requests per rate" in shape_text(grown[:-1])
    (diff,) = differences(load_runs([*SWEEP, derived_run(SWEEP[2], tmp_path / "again", longer)]))
    assert diff.startswith("number of requests differs")

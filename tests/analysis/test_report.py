"""compare_performance.py over the golden results (tests/analysis/golden.py): report.md and its plots,
incomplete runs, missing energy, default paths, one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

from analysis.runs import default_result_paths
from analysis.tables import compare_results
from experiments.schema import EnergySection, RunResult
from tests.analysis.golden import CRASHED, DIS, GOLDEN, ONE, OTHER, PD, SWEEP, TRAD, cli, derived_run

BASE_PLOTS = ("cdf_ttft", "cdf_itl", "cdf_e2e", "itl_over_time", "power_timeline", "energy_bars")
SWEEP_PLOTS = ("latency_vs_load", "pareto")


def test_cli_writes_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = cli(TRAD, DIS / "result.json", "--slo", "ttft=150", "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    assert f"{PD}/{ONE}" in proc.stdout  # the terminal table
    report = (out / "report.md").read_text()
    assert "| run | setup | offered load |" in report and f"| {PD} | {PD} | 4 req/s |" in report
    assert f"| TTFT p50 (ms) | 200.0 | **60.00** | 0.300 | {PD} |" in report
    assert f"| goodput (req/s) | 0.400 | **0.800** | 2.000 | {PD} |" in report
    assert f"| per request, all GPUs (J) | 116.7 | **110.0** | 0.943 | {PD} |" in report
    assert "ttft ≤ 150 ms" in report and "## TTFT split" in report
    for stem in BASE_PLOTS:
        png = out / f"{stem}.png"
        assert png.stat().st_size > 1000, stem
        assert f"]({stem}.png)" in report
    assert not any((out / f"{s}.png").exists() for s in SWEEP_PLOTS)
    assert "need runs at several rates" in report


def test_cli_sweep_adds_load_curves_and_pareto(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = cli(TRAD, *SWEEP, "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    for stem in (*BASE_PLOTS, *SWEEP_PLOTS):
        assert (out / f"{stem}.png").stat().st_size > 1000, stem
    assert "## Load sweep" in report
    # the 4 req/s group pairs traditional with the sweep's 4 req/s run
    assert f"| metric | {ONE}@4 | {PD}@4 | {PD}@4/{ONE}@4 | better |" in report
    assert f"| {PD}@2 | 2 req/s |" in report


def test_incomplete_run_is_included_and_flagged(tmp_path: Path) -> None:
    cmp = compare_results([TRAD, CRASHED])
    crashed = next(r for r in cmp.runs if not r.complete)
    assert crashed.summary.measured == 2  # records recovered from requests.jsonl
    out = tmp_path / "report"
    proc = cli(TRAD, CRASHED, "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    assert f"**{PD} is INCOMPLETE**" in report
    assert f"| metric | {ONE} | {PD} (INCOMPLETE) |" in report
    assert "| per request, all GPUs (J) | 116.7 | n/a (run did not finish, no energy section) |" in report


def test_missing_energy_reads_na_with_reason_never_zero(tmp_path: Path) -> None:
    reason = "NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver); energy fields will be null"

    def on_cpu(result: RunResult) -> None:
        result.energy = EnergySection.unavailable(reason)

    cpu = derived_run(TRAD, tmp_path / "cpu", on_cpu)
    out = tmp_path / "report"
    proc = cli(cpu, DIS, "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    assert "| per request, all GPUs (J) | n/a (NVML unavailable) | 110.0 |  |  |" in report
    assert f"{ONE}: no energy: {reason}." in report
    assert (out / "power_timeline.png").stat().st_size > 1000  # disagg's panel, traditional's says why

    out2 = tmp_path / "report2"
    proc = cli(cpu, "--output-dir", out2)
    assert proc.returncode == 0, proc.stderr
    report = (out2 / "report.md").read_text()
    assert "power timelines skipped" in report and "energy bars skipped" in report
    assert not (out2 / "power_timeline.png").exists() and not (out2 / "energy_bars.png").exists()


def test_defaults_pick_newest_traditional_and_disagg(tmp_path: Path) -> None:
    assert default_result_paths(GOLDEN) == [TRAD / "result.json", DIS / "result.json"]
    shutil.copytree(GOLDEN / "sweep", tmp_path / "results" / "sweep")
    shutil.copytree(OTHER, tmp_path / "results" / "old")
    chosen = default_result_paths(tmp_path / "results")
    assert sorted(p.parent.name for p in chosen) == ["old", "rate1", "rate2", "rate4"]  # the whole sweep
    proc = cli("--results-dir", tmp_path / "empty", "--no-plots")
    assert proc.returncode == 2 and proc.stderr.startswith("error: no traditional or disagg results")


def test_bad_result_path_is_one_line_error() -> None:
    proc = cli(GOLDEN / "does-not-exist")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: no result at")

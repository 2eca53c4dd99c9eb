"""The CPU caveat on real result files: golden GPU runs (no caveat), CPU variants of them (saved and
reloaded), the committed CPU xPyD run, and the caveat on top of a report compare_performance.py's code
wrote."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from analysis.plots import make_plots
from analysis.render import write_report
from analysis.tables import compare_results
from demo import cpu_caveat as caveat
from demo.cli import add_cpu_caveat
from experiments.schema import EnergySection, GpuInventory, RunResult, ServerMetrics
from tests.analysis.golden import DIS, ONE, PD, REPO, TRAD, derived_run

CPU_XPYD = REPO / "results" / "cpu-xpyd" / "20261122-051127-disagg-1P2D-example"
NO_DRIVER = "NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver)"


def _on_cpu(result: RunResult) -> None:
    """What the CPU launchers and the runner record on a machine without a GPU."""
    result.metadata.hostname = socket.gethostname()
    result.metadata.gpu_inventory = GpuInventory(available=False, reason=NO_DRIVER)
    setup = result.metadata.serving_setup
    assert setup is not None
    setup.gpus, setup.num_gpus = [], None
    for instance in setup.instances:
        instance.gpu = None
    result.energy = EnergySection(available=False, reason=NO_DRIVER)
    if setup.kind == "xpyd":  # the decode instance's vLLM counter of KV-transferred prompt tokens
        result.server_metrics = {"http://127.0.0.1:8200": ServerMetrics(deltas={caveat.KV_IN_METRIC: 256.0})}


@pytest.fixture
def cpu_runs(tmp_path: Path) -> list[Path]:
    return [derived_run(src, tmp_path / "runs" / src.name, _on_cpu) for src in (TRAD, DIS)]


def test_gpu_runs_get_no_caveat_and_their_report_is_untouched(tmp_path: Path) -> None:
    results = [RunResult.load(TRAD), RunResult.load(DIS)]
    assert not any(caveat.is_cpu_run(r) for r in results)
    assert caveat.cpu_caveat(results, cores=2) == []
    report = write_report(compare_results([TRAD, DIS]), tmp_path)
    before = report.read_text()
    assert add_cpu_caveat(results, report, tmp_path / "h200x2" / "index.md") == ""
    assert report.read_text() == before


def test_cpu_runs_are_detected_and_the_caveat_states_cores_sharing_kv_and_spread(
    cpu_runs: list[Path],
) -> None:
    results = [RunResult.load(p) for p in cpu_runs]
    assert all(caveat.is_cpu_run(r) for r in results)
    assert [caveat.host_cores(r) for r in results] == [len(os.sched_getaffinity(0))] * 2
    text = " ".join(caveat.cpu_caveat(results, cores=2, gpu_report="GPU/index.md"))
    assert text.startswith(caveat.HEADLINE)
    assert "shared the same 2 CPU cores" in text
    assert f"{ONE}: 1 vLLM instance and the load generator" in text
    assert f"{PD}: 2 vLLM instances, the proxy and the load generator" in text
    assert f"({PD}: 256 prompt tokens)" in text
    # golden TTFT p50: 200 ms for one instance, 60 ms for the pair
    assert f"from 60 ms ({PD}) to 200 ms ({ONE}), 3.3x apart" in text
    assert "No energy either" in text
    assert text.endswith("comparison: GPU/index.md")


def test_core_count_not_claimed_for_a_run_from_another_host(cpu_runs: list[Path], tmp_path: Path) -> None:
    def elsewhere(result: RunResult) -> None:
        result.metadata.hostname = "another-host"

    other = RunResult.load(derived_run(cpu_runs[0], tmp_path / "other", elsewhere))
    assert caveat.host_cores(other) is None
    assert "their count was not recorded" in caveat.cpu_caveat([other])[0]


def test_gpu_host_launched_with_cpu_flag_counts_as_cpu_but_a_hand_started_gpu_server_does_not(
    tmp_path: Path,
) -> None:
    def cpu_flag(result: RunResult) -> None:  # GPUs in the inventory, none given to the instances
        setup = result.metadata.serving_setup
        assert setup is not None
        setup.gpus, setup.num_gpus = [], None

    def by_hand(result: RunResult) -> None:  # no launch plan: the setup came from the server itself
        cpu_flag(result)
        assert result.metadata.serving_setup is not None
        result.metadata.serving_setup.source = "the server's /version and /v1/models"

    assert caveat.is_cpu_run(RunResult.load(derived_run(TRAD, tmp_path / "cpu-flag", cpu_flag)))
    assert not caveat.is_cpu_run(RunResult.load(derived_run(TRAD, tmp_path / "by-hand", by_hand)))


def test_committed_cpu_xpyd_run_without_a_setup_record() -> None:
    result = RunResult.load(CPU_XPYD)
    assert result.metadata.serving_setup is None and caveat.is_cpu_run(result)
    text = " ".join(caveat.cpu_caveat([result], cores=2))
    # three vLLM servers were read for metrics; the two decode instances each received 3,328 tokens of KV
    assert "disagg: 3 vLLM instances, the proxy and the load generator" in text
    assert "(disagg: 6,656 prompt tokens)" in text
    assert "TTFT p50 ranges" not in text  # one run: nothing to compare


def test_caveat_heads_the_real_report_and_the_console_says_the_same(
    cpu_runs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    cmp = compare_results(cpu_runs)
    plots, notes = make_plots(cmp, out)
    report = write_report(cmp, out, plots, notes)
    index = tmp_path / "h200x2" / "index.md"
    console = add_cpu_caveat([RunResult.load(p) for p in cpu_runs], report, index)

    lines = report.read_text().splitlines()
    generated = next(i for i, line in enumerate(lines) if line.startswith("Generated "))
    assert lines[0].startswith("# ") and generated < lines.index("## Runs")  # title, caveat, the report
    quote = [line for line in lines[1:generated] if line]
    assert all(line.startswith(">") for line in quote)
    assert quote[0].startswith(f"> **{caveat.HEADLINE}** These runs served on CPU, without a GPU")
    assert quote[-1].endswith("comparison: [../h200x2/index.md](../h200x2/index.md)")
    assert console.startswith(f"NOTE: {caveat.HEADLINE}")
    assert " ".join(console.split()).endswith(f"comparison: {index}")
    assert "3.3x apart" in " ".join(console.split())

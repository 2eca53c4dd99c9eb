"""The frontier campaign end to end with the real launchers, proxy and runner over fake vLLM servers.

tests/disagg/fake_serving_vllm, first on PYTHONPATH, stands in for vLLM (the shared fake upstream on
the launcher's port), so every setup really starts, serves, is measured and stopped, in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.schema import RunResult

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).resolve().parent / "fake_serving_vllm"


def campaign(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE), str(ROOT)])}
    cmd = [sys.executable, "-m", "disagg.campaigns.frontier", "--shapes", "cpu-smoke", "--model", "tiny",
           "--num-requests", "4", "--gpu-ids", "", "--idle-seconds", "0", "--launch-timeout", "60",
           "--results", str(tmp / "res"), "--launch-dir", str(tmp / "launch"), *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def first_pass(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("campaign")
    probe = (
        f'{sys.executable} -c "import sys, urllib.request; r = urllib.request.urlopen(sys.argv[1] + '
        f"'/v1/models'); open(sys.argv[2], 'w').write(str(r.status))\" {{endpoint}} {tmp}/{{setup}}.up"
    )
    return tmp, campaign(tmp, "--setups", "single,replicas,pd", "--budget-s", "400", "--on-start", probe,
                         "--on-end", probe.replace(".up", ".down"))  # fmt: skip


def test_every_setup_and_rate_is_measured_with_its_setup(first_pass) -> None:
    tmp, proc = first_pass
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = {
        p.parent.name: RunResult.load(p) for p in sorted((tmp / "res" / "cpu-smoke").glob("*/*/result.json"))
    }
    by_setup: dict[str, list[RunResult]] = {}
    for path in sorted((tmp / "res" / "cpu-smoke").glob("*/*/result.json")):
        by_setup.setdefault(path.parts[-3], []).append(RunResult.load(path))
    assert sorted(by_setup) == ["pd", "replicas", "single"] and len(runs) == 6
    kinds = {name: {r.metadata.serving_setup.kind for r in rs} for name, rs in by_setup.items()}  # type: ignore[union-attr]
    assert kinds == {"single": {"single"}, "replicas": {"replicas"}, "pd": {"xpyd"}}
    for rs in by_setup.values():
        assert all(r.complete and r.summary is not None and r.summary.completed == 4 for r in rs)
        assert sorted(r.metadata.config.arrival.rate for r in rs) == [2, 4]
    # The same rate has the same prompts and arrival times in every setup.
    seeds = {(name, r.metadata.config.arrival.rate, r.metadata.config.workload.seed) for name, rs in
             by_setup.items() for r in rs}  # fmt: skip
    assert {(rate, seed) for _, rate, seed in seeds} == {(2, 4000), (4, 4001)}
    assert "healthy after" in proc.stdout and "campaign done" in proc.stdout


def test_on_start_runs_once_per_setup_against_its_live_endpoint(first_pass) -> None:
    tmp, proc = first_pass
    assert {p.name: p.read_text() for p in tmp.glob("*.up")} == {
        f"{s}.up": "200" for s in ("single", "replicas", "pd")
    }
    assert proc.stdout.count("on start: exit 0") == 3


def test_on_end_runs_once_per_setup_after_its_points_while_it_is_up(first_pass) -> None:
    tmp, proc = first_pass
    assert proc.stdout.count("on end: exit 0") == 3
    for setup in ("single", "replicas", "pd"):
        down = tmp / f"{setup}.down"
        assert down.read_text() == "200"  # the endpoint still answered
        results = list((tmp / "res" / "cpu-smoke" / setup).glob("*/result.json"))
        assert len(results) == 2 and all(r.stat().st_mtime <= down.stat().st_mtime for r in results)


def test_a_second_pass_resumes_and_measures_nothing_again(first_pass) -> None:
    tmp, _ = first_pass
    again = campaign(tmp, "--setups", "single,replicas,pd", "--budget-s", "400")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("every point done") == 3 and "start " not in again.stdout
    assert len(list((tmp / "res" / "cpu-smoke").glob("*/*/result.json"))) == 6


def test_a_failed_on_start_runs_no_point(tmp_path: Path) -> None:
    proc = campaign(tmp_path, "--setups", "single", "--rates", "4", "--on-start", "exit 7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "on start: exit 7" in proc.stdout and "none of its points run" in proc.stdout
    assert not list(tmp_path.rglob("result.json"))


def test_print_points_gives_each_points_requests_and_seed(tmp_path: Path) -> None:
    """What a prediction of the same points needs: requests = max(floor, rate x min arrival), the seeds."""
    proc = campaign(tmp_path, "--setups", "single", "--shapes", "prefill-heavy,decode-heavy", "--rates",
                    "6,0.2", "--num-requests", "20", "--min-arrival-s", "60", "--print-points")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [  # 6 req/s is no shape rate: base + 100 + 60; 0.2 -> 20 (floor)
        "single prefill-heavy 6 360 1160 2048 256",
        "single prefill-heavy 0.2 20 1102 2048 256",
        "single decode-heavy 6 360 2160 512 1024",
        "single decode-heavy 0.2 20 2102 512 1024",
    ]
    assert not (tmp_path / "launch").exists()  # nothing launched


def test_a_budget_too_small_starts_nothing(tmp_path: Path) -> None:
    proc = campaign(tmp_path, "--setups", "single", "--budget-s", "30")
    assert proc.returncode == 0, proc.stderr
    assert "not enough to start it" in proc.stdout
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").rglob("result.json"))


def test_a_smaller_launch_reserve_starts_what_the_default_would_not(tmp_path: Path) -> None:
    proc = campaign(tmp_path, "--setups", "single", "--rates", "4", "--budget-s", "40", "--launch-est-s", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not enough to start it" not in proc.stdout and "healthy after" in proc.stdout
    assert len(list((tmp_path / "res").rglob("result.json"))) == 1


def test_every_rate_gets_its_own_prompts() -> None:
    from disagg.campaigns.frontier import SHAPES

    shape = SHAPES["decode-heavy"]
    rates = (*shape.rates, 12, 20, 2.5)
    assert len({shape.seed(r) for r in rates}) == len(rates)
    assert shape.seed(16) == shape.seed_base + shape.rates.index(16)  # committed runs keep their prompts


def test_a_trace_shape_rescales_the_trace_and_keep_up_launches_once(tmp_path: Path) -> None:
    first = campaign(tmp_path, "--setups", "single", "--shapes", "azure-conv", "--rates", "20", "--keep-up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "healthy after" in first.stdout and "kept up (--keep-up)" in first.stdout
    try:
        # a launch reserve larger than the budget: a setup already up needs none, so its point still runs
        again = campaign(tmp_path, "--setups", "single", "--shapes", "azure-conv", "--rates", "20,40",
                         "--keep-up", "--launch-est-s", "10000")  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        assert "not enough" not in again.stdout
        assert "already up (--keep-up)" in again.stdout and "healthy after" not in again.stdout
    finally:
        subprocess.run(
            [sys.executable, "-m", "traditional", "stop", str(tmp_path / "launch" / "single")], cwd=ROOT
        )
    runs = sorted((tmp_path / "res" / "azure-conv" / "single").glob("*/result.json"))
    assert [p.parent.name.rsplit("-", 1)[1] for p in runs] == ["rate20", "rate40"]  # rate 20 not run twice
    for path, rate in zip(runs, (20, 40), strict=True):
        res = RunResult.load(path)
        assert res.metadata.config.arrival.kind == "trace" and res.metadata.trace is not None
        # the campaign's floor of requests, the trace's first rows, their gaps rescaled to a mean of `rate`
        assert res.metadata.trace.requests == 4 and res.metadata.trace.offered_rate == pytest.approx(rate)
        assert res.metadata.config.workload.dataset == "data/traces/azure_conv_2023-head3000.csv"

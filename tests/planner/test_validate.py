"""`planner validate`: replaying measured runs, on synthetic runs with known answers and on the real
2 x H200 sweeps (a subsample, to stay fast)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.frontier import SloGrid, build_frontier
from analysis.runs import find_results, load_runs
from experiments.arrivals import ArrivalConfig
from experiments.schema import RunResult
from experiments.slo import DEFAULT_SLO_GRID, parse_slo_grid
from planner.measured import load_measured
from planner.setups import Setup
from planner.validate import slo_cells, slo_label, validate
from planner.validate_report import markdown
from tests.planner.measured_runs import fail_requests, scale_energy, write_run
from tests.planner.profiles import make_profile

ROOT = Path(__file__).resolve().parents[2]
FRONTIER = ROOT / "results" / "h200x2" / "frontier"
# A prefill of 512 tokens ~90 ms, a decode step 4 ms + 0.5 ms per sequence: 1P1D saturates near 11 req/s.
PROFILE = make_profile(prefill=(0.04, 1e-4, 0.0), decode=(0.004, 5e-4, 0.0), kv_latency_s=0.005)
SLOS = slo_cells({"ttft": (300, 1000), "tpot": (8, 50)})
RATES = (2, 6, 10, 14)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<root>/<shape>/<setup>/<run>: one instance and 1P1D at four rates, numbers from the simulator."""
    root = tmp_path_factory.mktemp("measured")
    for setup in (Setup(0, 1), Setup(1, 1)):
        for i, rate in enumerate(RATES):
            write_run(root / "short" / setup.name / f"rate{rate}", PROFILE, setup, rate, seed=100 + i)
    return root


def test_a_run_replays_with_its_own_lengths_arrivals_and_energy_window(sweeps: Path) -> None:
    m = load_measured(sweeps / "short" / "1P1D" / "rate6")
    assert (m.setup, m.rate, m.arrival.seed, m.measured_requests) == (Setup(1, 1), 6.0, 101, 60)
    assert m.energy_lead_s == pytest.approx(0.5)
    assert m.scheduled_s[0] == 0 and np.all(np.diff(m.scheduled_s) >= 0)
    assert set(m.sent_prompt_tokens.tolist()) == {512} and m.engine.max_num_batched_tokens == 2048


def test_the_simulators_own_runs_validate_exactly(sweeps: Path) -> None:
    v = validate(PROFILE, sweeps, SLOS)
    assert [(p.setup, p.rate) for p in v.points] == [("1P1D", r) for r in RATES] + [
        ("single", r) for r in RATES
    ]
    assert not v.skipped
    for p in v.points:
        assert p.shape == "short" and p.notes == ()
        assert p.j_pass and p.j_error == pytest.approx(0.0, abs=1e-6)
        assert p.measured.static_j_per_request == pytest.approx(p.predicted.static_j_per_request, rel=1e-6)
        for name in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms"):
            assert getattr(p.measured, name) == pytest.approx(getattr(p.predicted, name), rel=1e-3, abs=1e-3)
        for measured, predicted in p.attainment.values():
            assert measured == pytest.approx(predicted, abs=1 / 60 + 1e-9)  # a ns of rounding at a limit
    assert len(v.rates) == 2 * len(SLOS)
    assert v.counts()["sustained_rate"]["miss"] == 0
    assert v.counts()["j_per_request"] == {"pass": 8, "miss": 0, "n/a": 0}
    # the sweep saturates inside the rates tried: at least one SLO gives an interpolated rate that agrees
    assert any(c.measured.bound == "interpolated" and c.agreement.verdict == "pass" for c in v.rates)


def test_energy_off_by_20_percent_and_failed_requests_are_marked(sweeps: Path, tmp_path: Path) -> None:
    root = tmp_path / "m"
    shutil.copytree(sweeps / "short" / "single", root / "short" / "single")
    scale_energy(root / "short" / "single" / "rate6", 1.2)
    fail_requests(root / "short" / "single" / "rate2", [0, 1, 2, 3, 4, 5])  # 10% of 60
    v = validate(PROFILE, root, [{"ttft": 1000.0, "tpot": 50.0}])
    by = {p.rate: p for p in v.points}
    assert by[6].j_pass is False and by[6].j_error == pytest.approx(1 / 1.2 - 1, rel=1e-6)
    assert v.counts()["j_per_request"]["miss"] == 1
    assert by[2].attainment["ttft<=1000 tpot<=50"] == (pytest.approx(0.9), 1.0)
    assert "6 measured request(s) failed" in by[2].notes[0]


def test_the_frontier_and_the_validation_measure_one_sustained_rate(sweeps: Path, tmp_path: Path) -> None:
    """One rule, one axis: for the same runs the planner's measured sustained rate is the frontier's, with
    a dip and a re-pass (1P1D at 6 req/s loses a third of its requests) and a repeated rate (pooled)."""
    root = tmp_path / "m"
    shutil.copytree(sweeps, root)
    fail_requests(root / "short" / "1P1D" / "rate6", list(range(0, 60, 3)))  # 20 of 60: 66.7% at best
    shutil.copytree(root / "short" / "single" / "rate10", root / "short" / "single" / "rate10-repeat")
    v = validate(PROFILE, root, SLOS)
    grid = SloGrid((300.0, 1000.0), (8.0, 50.0))
    f = build_frontier(load_runs(find_results(root)), grid, 0.9)
    folder = {s.name: s.points[0].runs[0].path.parent.parent.name for s in f.setups}  # setup -> folder
    assert sorted(folder.values()) == ["1P1D", "single"]
    seen = 0
    for s in f.setups:
        for i, j in grid.cells:
            label = slo_label({"ttft": grid.ttft_ms[i], "tpot": grid.tpot_ms[j]})
            pd = folder[s.name] == "1P1D"
            planner = next(c for c in v.rates if c.slo_label == label and ("1P1D" in c.setup) == pd)
            frontier = f.capacity[(s.name, i, j)].sustained
            assert planner.measured == frontier, (s.name, label)
            seen += 1
    assert seen == 2 * len(SLOS) and len(v.rates) == 2 * len(SLOS)
    # the cases that told the two apart before they shared the rule: a re-pass above a miss, a repeat
    assert any(c.measured.non_monotone and c.measured.bound == "interpolated" for c in v.rates)
    single = next(c for c in v.rates if c.setup == "single")
    assert single.rates == (2, 6, 10, 14)  # rate 10's two runs are one point
    # the axis is the rate the Poisson samples arrived at, not the nominal
    assert all(abs(a - n) > 1e-3 for a, n in zip(single.offered, single.rates, strict=True))


def test_a_run_without_a_realized_rate_stands_at_its_nominal_rate(sweeps: Path, tmp_path: Path) -> None:
    root = tmp_path / "m"
    shutil.copytree(sweeps / "short" / "single", root / "short" / "single")
    shutil.rmtree(root / "short" / "single" / "rate14")
    one = write_run(root / "short" / "single" / "rate14", PROFILE, Setup(0, 1), 14, n=1, seed=103)
    assert RunResult.load(one).summary.arrival_rate is None  # one send: no span, no realized rate
    v = validate(PROFILE, root, [{"ttft": 1000.0, "tpot": 50.0}])
    (c,) = v.rates
    assert c.rates == (2, 6, 10, 14) and c.offered[-1] == 14  # the nominal stands in for rate 14 alone
    assert all(abs(a - n) > 1e-3 for a, n in zip(c.offered[:-1], c.rates[:-1], strict=True))
    assert c.measured.nominal_axis and c.predicted.nominal_axis
    md = markdown(v, {"ttft": (1000.0,), "tpot": (50.0,)})
    assert "short / single: a run recorded no realized arrival rate; its nominal rate stands in" in md


def test_a_closed_loop_run_is_listed_as_skipped(sweeps: Path, tmp_path: Path) -> None:
    run = tmp_path / "m" / "short" / "single" / "closed"
    shutil.copytree(sweeps / "short" / "single" / "rate2", run)
    res = RunResult.load(run)
    res.metadata.config.arrival = ArrivalConfig(kind="closed", concurrency=4)
    res.save(run)
    v = validate(PROFILE, tmp_path / "m", SLOS)
    assert not v.points and [s.run for s in v.skipped] == ["short/single/closed"]
    assert "closed-loop" in v.skipped[0].reason


def test_the_command_writes_markdown_and_json(sweeps: Path, tmp_path: Path) -> None:
    profile = PROFILE.save(tmp_path / "p.json")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "validate", "--profile", str(profile), "--measured", str(sweeps),
         "--slo-grid", "ttft=300,1000 tpot=8,50", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "J per request within 10%: 8 of 8 runs" in proc.stdout
    doc = json.loads((out / "validation.json").read_text())
    assert doc["slo_grid"] == {"ttft": [300, 1000], "tpot": [8, 50]}
    assert len(doc["points"]) == 8 and len(doc["sustained_rates"]) == 8
    assert doc["counts"]["j_per_request"]["pass"] == 8
    md = (out / "validation.md").read_text()
    assert "**NOT a validation.** The profile is `test`" in md  # not a measured profile
    assert "| single | 14 |" in md and "## SLO-sustaining rate" in md


def test_slo_grid_parsing() -> None:
    assert parse_slo_grid("ttft=250,500;tpot=10") == {"ttft": (250.0, 500.0), "tpot": (10.0,)}
    assert len(slo_cells(DEFAULT_SLO_GRID)) == 16
    for bad in ("", "ttft", "ttft=a", "ttft=0", "ttft=1 ttft=2", "speed=3"):
        with pytest.raises(ValueError):
            parse_slo_grid(bad)


def test_real_replicas_sweep_replays_with_the_recorded_schedule(tmp_path: Path) -> None:
    """The committed decode-heavy 2-replica sweep (4 runs): lengths, seeds and arrivals as measured."""
    root = tmp_path / "frontier"
    shutil.copytree(FRONTIER / "decode-heavy-short" / "replicas", root / "decode-heavy" / "replicas")
    v = validate(make_profile(), root, [{"ttft": 1000.0, "tpot": 50.0}])
    assert [(p.setup, p.rate, p.requests) for p in v.points] == [
        ("replicas:2", r, 200) for r in (4, 8, 12, 16)
    ]
    for p in v.points:
        assert not any(
            "arrivals differ" in n for n in p.notes
        )  # the regenerated schedule is the recorded one
        assert any("max_num_batched_tokens 8192" in n for n in p.notes)  # the run's engine, not the profile's
    first = v.points[0]
    assert first.measured.ttft_p50_ms == pytest.approx(33.1, abs=0.1)  # the committed run's numbers
    assert first.measured.j_per_request == pytest.approx(284.8, abs=0.1)
    assert first.measured.static_j_per_request == pytest.approx(63.9, abs=0.1)
    # the made-up test profile predicts something, on the same 200 requests
    assert first.predicted.throughput_rps == pytest.approx(first.measured.throughput_rps, rel=0.05)

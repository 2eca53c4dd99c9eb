"""The SLO frontier over golden sweeps (tests/analysis/frontier_sweeps.py, saved and loaded through the real
schema): interpolation between bracketing rates, never met / never saturated, per-GPU and per-kW division,
winners and ratios, energy per request, mixed-setup refusal, several shapes, old results' GPU counts, and
the CLI (--frontier and auto-detection)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.frontier import Capacity, Frontier, SloGrid, build_frontier, capacity, verdict
from analysis.frontier_render import render_frontier
from analysis.runs import CompareError, load_runs
from analysis.setup_sweeps import MixedSetups
from analysis.sustained import SweepPoint
from bench.synthetic_sweeps import (
    FAST,
    ONE,
    PD,
    REPLICAS,
    golden_runs,
    save_sweep,
    sweep_run,
)
from experiments.metrics import compute_summary
from experiments.schema import RunResult
from tests.analysis.golden import cli

GRID = SloGrid(ttft_ms=(500.0, 1000.0), tpot_ms=(25.0, 50.0))
TIGHT, LOOSE = (0, 0), (1, 1)  # (500 ms, 25 ms) and (1000 ms, 50 ms)


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sweeps"
    save_sweep(root, golden_runs())
    return root


def frontier_of(root: Path, **kw: object) -> Frontier:
    return build_frontier(load_runs(sorted(root.rglob("result.json"))), GRID, **kw)  # type: ignore[arg-type]


def cap(f: Frontier, setup: str, cell: tuple[int, int]) -> Capacity:
    return f.capacity[(setup, *cell)]


def test_interpolates_between_the_bracketing_rates(sweep_dir: Path) -> None:
    f = frontier_of(sweep_dir)
    assert [s.name for s in f.setups] == [ONE, PD, REPLICAS]
    one = cap(f, ONE, TIGHT)  # attainment 100% at 4 req/s, 70% at 6: 4 + (1 - 0.9) / (1 - 0.7) * 2
    assert one.status == "bracketed"
    # the golden runs send exactly 1/rate s apart: each arrives at its nominal rate, (10 - 1) / span
    assert one.low == SweepPoint(4.0, 4.0, 1.0) and one.high is not None
    assert (one.high.nominal, one.high.rate, one.high.attainment) == pytest.approx((6.0, 6.0, 0.7))
    assert one.rate == pytest.approx(4 + 2 / 3, abs=1e-12)
    # The runs draw 400 W and 600 W over both GPUs, half on each; one instance is charged for GPU 0 only
    # (GPU 1 idle), in per kW as in per GPU: 200 W and 300 W, interpolated at the same fraction.
    assert one.power_w == pytest.approx(200 + 100 / 3, abs=1e-9)
    assert one.per_gpu == pytest.approx(4 + 2 / 3, abs=1e-12)  # one GPU
    assert one.per_kw == pytest.approx(20.0, abs=1e-9)
    rep = cap(f, REPLICAS, TIGHT)  # 100% at 8, 80% at 12: 8 + 0.5 * 4 = 10 req/s on 2 GPUs
    assert rep.rate == pytest.approx(10.0, abs=1e-12) and rep.per_gpu == pytest.approx(5.0, abs=1e-12)
    assert rep.power_w == pytest.approx(950.0) and rep.per_kw == pytest.approx(10 / 0.95, abs=1e-9)


def test_never_met_and_never_saturated(sweep_dir: Path) -> None:
    f = frontier_of(sweep_dir)
    pd = cap(f, PD, TIGHT)
    assert pd.status == "never met" and pd.rate is None and pd.high == SweepPoint(4.0, 4.0, 0.5)
    assert pd.per_gpu == 0.0 and pd.per_kw == 0.0
    one = cap(f, ONE, LOOSE)  # 9 of 10 at 8 req/s (one failed request counts as a miss): exactly 90% meets
    assert one.status == "never saturated" and one.lower_bound
    assert one.rate == 8.0 and one.low == SweepPoint(8.0, 8.0, 0.9) and one.high is None
    assert one.per_kw == pytest.approx(8 / 0.35)  # 700 W over both GPUs, 350 W on GPU 0
    rep = cap(f, REPLICAS, LOOSE)
    assert rep.status == "never saturated" and rep.per_gpu == 6.0 and rep.per_kw == pytest.approx(12.0)


def test_winner_and_ratio_per_gpu_and_per_kw(sweep_dir: Path) -> None:
    f = frontier_of(sweep_dir)
    v = f.verdicts[("per_gpu", *TIGHT)]
    assert (v.leader, v.runner_up, v.qualifier) == (REPLICAS, ONE, "exact")
    assert v.ratio == pytest.approx(5 / (4 + 2 / 3), abs=1e-12)
    v = f.verdicts[("per_kw", *TIGHT)]  # 20 req/s per kW against 10 / 0.95
    assert (v.leader, v.runner_up, v.qualifier) == (ONE, REPLICAS, "exact")
    assert v.ratio == pytest.approx(20 * 0.95 / 10, abs=1e-9)
    v = f.verdicts[("per_gpu", *LOOSE)]  # 1 instance >= 8 per GPU, 2 replicas >= 6: both lower bounds
    assert (v.leader, v.runner_up, v.qualifier) == (ONE, REPLICAS, "unknown")
    assert v.ratio == pytest.approx(4 / 3)


def test_verdict_qualifiers() -> None:
    assert verdict({"a": (6.0, True), "b": (4.0, False)}).qualifier == "at least"
    at_most = verdict({"a": (6.0, False), "b": (4.0, True)})
    assert (at_most.leader, at_most.ratio, at_most.qualifier) == ("a", 1.5, "at most")
    only = verdict({"a": (3.0, False), "b": (0.0, False)})
    assert (only.leader, only.qualifier) == ("a", "only") and math.isinf(only.ratio or 0)
    assert verdict({"a": (0.0, False), "b": (0.0, False)}).qualifier == "none"
    assert verdict({"a": (2.0, False), "b": (2.0, False)}).qualifier == "tie"
    assert verdict({"a": (2.0, False), "b": (None, False)}).qualifier == "alone"  # b has no power


def test_capacity_takes_the_highest_rate_meeting_the_level() -> None:
    pts = [SweepPoint(r, r, a) for r, a in zip([1, 2, 3, 4], [0.95, 0.85, 0.92, 0.5], strict=True)]
    c = capacity(pts, [100, 200, 300, 400], 0.9, 2)
    assert c.status == "bracketed" and c.non_monotone
    # 3 meets (92%) after 2 missed (85%): 3 + (0.92 - 0.9) / (0.92 - 0.5) * 1 = 3 + 1/21 = 3.047619...
    assert c.rate == pytest.approx(3 + 1 / 21)
    assert c.power_w == pytest.approx(300 + 100 / 21)  # the same fraction of the way from 300 to 400 W
    assert c.per_gpu == pytest.approx((3 + 1 / 21) / 2)


def arriving_at(run: RunResult, realized: float) -> RunResult:
    """The run with its requests sent 1/`realized` s apart instead of 1/nominal (each request's TTFT and
    chunk gaps kept): a Poisson sample that arrived off its nominal rate, as on the GPU host."""
    first = run.records[0].sent_mono_ns
    assert first is not None
    for i, r in enumerate(run.records):
        assert r.sent_mono_ns is not None
        shift = first + round(i / realized * 1e9) - r.sent_mono_ns
        for name in ("scheduled_mono_ns", "sent_mono_ns", "sent_epoch_ns", "first_byte_mono_ns",
                     "first_token_mono_ns", "end_mono_ns", "end_epoch_ns"):  # fmt: skip
            if getattr(r, name) is not None:
                setattr(r, name, getattr(r, name) + shift)
        r.chunk_mono_ns = [t + shift for t in r.chunk_mono_ns]
    run.summary = compute_summary(run.records)
    return run


def test_the_rate_axis_is_the_realized_offered_rate(tmp_path: Path) -> None:
    runs = golden_runs()
    one = [r for r in runs if r.metadata.serving_setup and r.metadata.serving_setup.label == ONE]
    at = {r.metadata.config.offered_rate: r for r in one}
    arriving_at(at[4], 3.6)  # 10 requests over 9 / 3.6 = 2.5 s
    arriving_at(at[6], 5.0)  # over 1.8 s
    runs[runs.index(at[2])] = sweep_run(ONE, 2, [FAST], 300, order=0)  # one request: no realized rate
    save_sweep(tmp_path, runs)
    f = frontier_of(tmp_path)
    c = cap(f, ONE, TIGHT)
    # 100% at nominal 4 (arrived 3.6), 70% at nominal 6 (arrived 5): 3.6 + (1 - 0.9) / (1 - 0.7) * (5 - 3.6)
    # = 3.6 + 1.4 / 3 = 4.0667 req/s; on the nominal axis it would be 4 + 2 / 3 = 4.667 (15% more)
    assert c.rate == pytest.approx(3.6 + 1.4 / 3, abs=1e-9)
    assert c.low is not None and (c.low.nominal, c.low.rate) == (4.0, pytest.approx(3.6, abs=1e-9))
    assert c.power_w == pytest.approx(200 + 100 / 3, abs=1e-9)  # GPU 0: 200 -> 300 W, a third of the way
    assert c.per_kw == pytest.approx((3.6 + 1.4 / 3) / (200 + 100 / 3) * 1000, abs=1e-6)
    pts = next(s for s in f.setups if s.name == ONE).points
    assert [p.offered_rps for p in pts] == pytest.approx([2.0, 3.6, 5.0, 8.0])
    assert [p.arrived_rps is None for p in pts] == [True, False, False, False]
    assert any("no realized arrival rate recorded at 2 req/s" in n for n in f.notes)
    md = render_frontier(f)
    assert (
        "| 500 | 25 | 1 instance | 4.07 | 4.07 | 17.43 | 4 (3.6) req/s: 100.0% → 6 (5) req/s: 70.0% |" in md
    )


def test_two_rates_that_arrived_at_one_realized_rate_are_a_one_line_error(tmp_path: Path) -> None:
    runs = golden_runs()
    four = next(r for r in runs if r.metadata.config.offered_rate == 4 and r.metadata.mode == "traditional")
    arriving_at(four, 6.0)  # one instance's "4" now arrived at 6 req/s, as its "6" did
    save_sweep(tmp_path, runs)
    with pytest.raises(CompareError, match="appears twice on the axis"):
        frontier_of(tmp_path)


def test_energy_per_request_and_token_split(sweep_dir: Path) -> None:
    f = frontier_of(sweep_dir)
    one = next(s for s in f.setups if s.name == ONE)
    p2, p8 = one.points[0], one.points[-1]
    # GPU 0's half of 300 W x 10 s over 10 requests (GPU 1 idle, not the setup's)
    assert p2.per("energy_j", "request") == pytest.approx(150.0)
    assert p2.per("static_j", "request") == pytest.approx(37.5)  # idle = a quarter
    assert p2.per("dynamic_j", "request") == pytest.approx(112.5)
    assert p8.completed == 9 and p8.per("energy_j", "token") == pytest.approx(3500 / 99)


def test_mixed_setup_sweep_is_refused_or_left_out_with_force(tmp_path: Path) -> None:
    runs = golden_runs()
    odd = runs[5]  # 2 replicas at 8 req/s, served with another max-num-batched-tokens
    assert odd.metadata.serving_setup is not None
    odd.metadata.serving_setup.instances[1].settings.max_num_batched_tokens = 4096
    save_sweep(tmp_path, runs)
    loaded = load_runs(sorted(tmp_path.rglob("result.json")))
    with pytest.raises(MixedSetups, match=r"max_num_batched_tokens: 8192 vs 4096.*--force"):
        build_frontier(loaded, GRID)
    f = build_frontier(loaded, GRID, force=True)
    assert [p.rate for p in next(s for s in f.setups if s.name == REPLICAS).points] == [4.0, 12.0]
    assert any("passthrough-rate8" in n and "left out" in n for n in f.notes)


def test_runs_of_one_sweep_id_with_two_setups_are_refused(tmp_path: Path) -> None:
    runs = [
        sweep_run(ONE, 4, [FAST] * 10, order=0, sweep_id="s1"),
        sweep_run(REPLICAS, 8, [FAST] * 10, order=1, sweep_id="s1"),
    ]
    save_sweep(tmp_path, runs)
    proc = cli(*sorted(tmp_path.rglob("result.json")), "--output-dir", tmp_path / "out")
    assert proc.returncode == 2 and "sweep s1: the setup differs" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_several_shapes_are_refused(tmp_path: Path) -> None:
    runs = [*golden_runs(), sweep_run(ONE, 4, [FAST] * 10, order=9, input_len=512)]
    save_sweep(tmp_path, runs)
    with pytest.raises(CompareError, match=r"2 workload shapes: input length '?2048'?.*512"):
        frontier_of(tmp_path)


def test_gpu_count_of_results_without_a_recorded_setup(tmp_path: Path) -> None:
    runs = [
        sweep_run(name, rate, [FAST] * 10, order=k, record_setup=False)
        for k, (name, rate) in enumerate([(ONE, 4), (ONE, 8), (REPLICAS, 4), (REPLICAS, 8), (PD, 4), (PD, 8)])
    ]
    save_sweep(tmp_path, runs)
    f = frontier_of(tmp_path)
    assert {s.name: s.num_gpus for s in f.setups} == {"traditional": 1, "disagg": 2, "passthrough": 2}
    assert any("no GPU count recorded" in n for n in f.notes)


def test_slo_grid_parsing() -> None:
    assert SloGrid.parse("ttft=1000,250:tpot=50") == SloGrid((250.0, 1000.0), (50.0,))
    assert SloGrid.parse("tpot=10").ttft_ms == (250.0, 500.0, 1000.0, 2000.0)
    for bad in ("", "ttft=", "ttft=a", "ttft=-1", "e2e=5", "ttft=1:ttft=2"):
        with pytest.raises(ValueError):
            SloGrid.parse(bad)


def test_cli_frontier_writes_markdown_and_plots(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("--frontier", sweep_dir, "--output-dir", out, "--slo-grid", "ttft=500,1000:tpot=25,50")
    assert proc.returncode == 0, proc.stderr
    md = (out / "frontier.md").read_text()
    assert (
        "| 500 | 25 | 1 instance | 4.67 | 4.67 | 20.00 | 4 (4) req/s: 100.0% → 6 (6) req/s: 70.0% | 233.3 |"
        in md
    )
    assert (
        "| 500 | 25 | 1P1D p2p_nccl GET | never met | never met | never met "
        "| lowest rate 4 (4) req/s: 50.0% |" in md
    )
    assert (
        "| 1000 | 50 | 2 replicas | ≥ 12.00 | ≥ 6.00 | ≥ 12.00 "
        "| 12 (12) req/s: 100.0% (highest rate measured) |" in md
    )
    assert "The rate axis is the realized offered rate" in md
    assert "| TTFT ≤ 500 ms | **2 replicas** ×1.07 (5.00 vs 4.67, 1 instance) |" in md
    assert (
        "| TTFT ≤ 1000 ms | **2 replicas** ×1.07 (5.00 vs 4.67, 1 instance) "
        "| **1 instance**? (≥8.00 vs ≥6.00, 2 replicas; neither saturated) |"
    ) in md
    assert "| 1 instance | 2 | 2.13 | 150.0 | 150.0 | 37.50 | 112.5 | 13.64 |" in md  # energy table, GPU 0
    for stem in ("frontier_winners", "frontier_capacity", "frontier_attainment", "frontier_energy"):
        assert (out / f"{stem}.png").stat().st_size > 5000, stem
        assert f"]({stem}.png)" in md
    assert not (out / "report.md").exists()


def test_cli_detects_sweeps_of_two_setups(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli(
        *sorted(sweep_dir.rglob("result.json")), "--output-dir", out, "--attainment", "0.8", "--no-plots"
    )
    assert proc.returncode == 0, proc.stderr
    assert "SLO frontier of these sweeps: frontier.md" in (out / "report.md").read_text()
    assert "attainment ≥ 80%" in (out / "frontier.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--attainment", "90"), "not a share in (0, 1]"),
        (("--slo-grid", "ttft=x"), "bounds must be numbers"),
        (("--frontier", "/nonexistent/dir"), "no results under /nonexistent/dir"),
    ],
)
def test_cli_frontier_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


def test_compare_refuses_a_mixed_sweep_and_keeps_it_with_force(tmp_path: Path) -> None:
    runs = [sweep_run(REPLICAS, rate, [FAST] * 10, order=k) for k, rate in enumerate((4, 8))]
    assert runs[1].metadata.serving_setup is not None
    runs[1].metadata.serving_setup.vllm_versions = ["0.26.0"]
    results = save_sweep(tmp_path, runs)
    out = tmp_path / "out"
    proc = cli(*results, "--output-dir", out, "--no-plots")
    assert proc.returncode == 2 and "vLLM versions: 0.23.0 vs 0.26.0" in proc.stderr
    proc = cli(*results, "--output-dir", out, "--no-plots", "--force")
    assert proc.returncode == 0, proc.stderr
    assert "sweep that mixes setups" in proc.stderr
    assert "sweep mixes setups (--force)" in (out / "report.md").read_text()

"""Sustained rate at an SLO: a case with a known answer, exact time scaling, safe pruning."""

from __future__ import annotations

import dataclasses

import pytest

from planner.fits import Fit
from planner.outcome import summarize
from planner.profile_model import DecodeModel, KvTransferModel, PrefillModel, Profile
from planner.search import (
    RunCache,
    SearchConfig,
    capacity_bound,
    search,
    search_grid,
    sustained_rate,
)
from planner.setups import Setup, candidate_setups
from planner.simulate import simulate
from planner.workload import WorkloadSpec, build_workload, fixed_lengths
from tests.planner.profiles import make_profile


def test_constant_arrivals_sustain_up_to_one_prefill_per_service_time() -> None:
    """Evenly spaced arrivals and a fixed prefill time S: no queue below 1/S, a growing one above."""
    service = 0.05
    prof = make_profile(prefill=(service, 0.0, 0.0), decode=(1e-5, 0.0, 0.0), budget=1000, max_seqs=1000)
    wl = fixed_lengths([1000] * 2000, [2] * 2000)
    cfg = SearchConfig({"ttft": 1.5 * service * 1e3}, arrival="constant", precision=0.01)
    res = sustained_rate(prof, Setup(1, 1), wl, cfg)
    assert res.bound_rps == pytest.approx(1 / service)
    # Above 1/S request i waits i*(S - 1/r): 90% of 2000 meet 1.5*S only while r < 1.0003/S.
    assert 0.99 / service <= res.sustained_rps <= 1.0003 / service
    assert res.at_sustained is not None and res.at_sustained.attainment >= 0.9


def _scaled(prof: Profile, k: float) -> Profile:
    def fit(f: Fit) -> Fit:
        return dataclasses.replace(f, coefficients=tuple(c * k for c in f.coefficients))

    kv = prof.kv_transfer
    return dataclasses.replace(
        prof,
        prefill=PrefillModel(fit(prof.prefill.fit)),
        decode=DecodeModel(fit(prof.decode.fit)),
        kv_transfer=KvTransferModel(kv.latency_s * k, kv.bytes_per_token * k, kv.bandwidth_bytes_per_s, "x"),
    )


def test_a_twice_as_fast_instance_sustains_twice_the_rate_at_half_the_slo() -> None:
    prof = make_profile(prefill=(0.01, 2e-5, 1e-9), decode=(0.005, 2e-5, 1e-8), kv_latency_s=0.01)
    wl = build_workload(WorkloadSpec(num_requests=1500, input_len=(200, 2000), output_len=(10, 200)))
    slo = {"ttft": 400.0, "tpot": 15.0}
    base = sustained_rate(prof, Setup(1, 2), wl, SearchConfig(slo))
    fast = sustained_rate(
        _scaled(prof, 0.5), Setup(1, 2), wl, SearchConfig({k: v / 2 for k, v in slo.items()})
    )
    assert base.sustained_rps > 0
    assert fast.sustained_rps == pytest.approx(2 * base.sustained_rps, rel=1e-9)
    assert fast.at_sustained is not None and base.at_sustained is not None
    assert fast.at_sustained.attainment == base.at_sustained.attainment


@pytest.mark.parametrize(("decode", "tight"), [((0.005, 2e-5, 1e-8), 0.6), ((0.005, 2e-5, 1e-8, 1e-6), 0.5)])
def test_no_setup_completes_requests_faster_than_its_capacity_bound(
    decode: tuple[float, ...], tight: float
) -> None:
    """With a batch^2 term (the second case) the cheapest decode batch is sqrt(a/d) = 71, not the largest;
    an overloaded instance runs bigger batches than that, so the bound is looser there."""
    prof = make_profile(prefill=(0.01, 2e-5, 1e-9), decode=decode, kv_latency_s=0.005)
    wl = build_workload(WorkloadSpec(num_requests=3000, input_len=(500, 3000), output_len=(20, 300)))
    cfg = SearchConfig({"ttft": 2000.0, "tpot": 100.0})
    for setup in candidate_setups(4):
        bound = capacity_bound(prof, setup, wl, prof.engine)
        rate = 1.5 * bound
        arrivals = wl.arrivals(cfg.arrival, rate, cfg.burstiness, cfg.seed)
        run = simulate(prof, setup, wl.prompt_tokens, wl.output_tokens, arrivals, prof.engine, rate)
        overload = summarize(run, prof.power, cfg.slo)
        assert overload.throughput_rps <= bound
        assert overload.throughput_rps > tight * bound  # and the bound is not loose by far
        res = sustained_rate(prof, setup, wl, cfg)
        assert 0 < res.sustained_rps <= bound


def test_search_returns_the_best_few_per_gpu_count_and_skips_only_hopeless_ones() -> None:
    prof = make_profile(prefill=(0.01, 2e-5, 1e-9), decode=(0.005, 2e-5, 1e-8), kv_latency_s=0.005)
    spec = WorkloadSpec(num_requests=500, input_len=2048, output_len=128)
    cfg = SearchConfig({"ttft": 1000.0, "tpot": 50.0}, requests_per_gpu=150, min_requests=500)
    lines: list[str] = []
    found = search(prof, [2, 6], spec, cfg, top=2, progress=lines.append)
    assert sorted(found) == [2, 6] and len(lines) == 2
    for gpus, results in found.items():
        assert len(results) == 2 and all(r.setup.gpus == gpus for r in results)
        assert results[0].goodput_per_gpu >= results[1].goodput_per_gpu
    # Exhaustively: the best setup on 6 GPUs is the one the pruned search found.
    wl = build_workload(dataclasses.replace(spec, num_requests=900))
    every = [sustained_rate(prof, s, wl, cfg) for s in candidate_setups(6)]
    assert max(every, key=lambda r: r.sustained_rps).setup == found[6][0].setup


def test_an_slo_below_unloaded_latency_sustains_nothing() -> None:
    prof = make_profile(prefill=(0.2, 0.0, 0.0))
    res = sustained_rate(
        prof, Setup(0, 1), fixed_lengths([100] * 100, [5] * 100), SearchConfig({"ttft": 50.0})
    )
    assert res.sustained_rps == 0.0 and res.at_sustained is None and "unloaded" in res.note


def test_an_slo_grid_shares_runs_and_finds_what_one_search_per_slo_finds() -> None:
    prof = make_profile(prefill=(0.02, 4e-5, 0.0), decode=(0.004, 2e-4, 0.0), budget=2048)
    spec = WorkloadSpec("random", 300, 512, 64)
    slos = [{"ttft": 200.0, "tpot": 10.0}, {"ttft": 1000.0, "tpot": 50.0}]
    cfg = SearchConfig(slos[0], requests_per_gpu=100, min_requests=300)
    grid = search_grid(prof, [2, 3], spec, cfg, slos, top=2)
    for slo, found in zip(slos, grid, strict=True):
        alone = search(prof, [2, 3], spec, dataclasses.replace(cfg, slo=slo), top=2)
        assert {g: [(r.setup, r.sustained_rps) for r in rs] for g, rs in found.items()} == {
            g: [(r.setup, r.sustained_rps) for r in rs] for g, rs in alone.items()
        }
    # a looser SLO over the same runs: the cache simulated each rate once for both SLOs
    wl = build_workload(spec)
    runs = RunCache(prof, Setup(1, 1), wl, cfg, prof.engine)
    tight = sustained_rate(prof, Setup(1, 1), wl, cfg, runs=runs)
    loose = sustained_rate(prof, Setup(1, 1), wl, dataclasses.replace(cfg, slo=slos[1]), runs=runs)
    assert runs.simulations < tight.simulations + loose.simulations
    assert loose.sustained_rps >= tight.sustained_rps > 0


def test_a_ramp_that_seems_to_meet_the_slo_runs_again_until_it_is_a_steady_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decode step of 1 ms + 1 ns per context token, 10-token prompts and 1000-token outputs: a batch
    of B steps in ~1 + 0.51 B ms, and at rate r holds B = r (1 + 0.51 B), so TPOT <= 5 ms (B <= 7.8)
    holds up to r = 1.57 req/s. The capacity bound counts only the prompt's context (10 req/s, the
    prefill's). Four requests never form a batch over 4, so a run of four meets the SLO up to the
    bound: a ramp, as the device's short decode-heavy runs were. Repeated until arrivals last 3 E2Es,
    the batch grows and the rate falls."""
    prof = make_profile(prefill=(0.0, 0.01, 0.0), decode=(0.001, 0.0, 1e-6), budget=1000, max_seqs=1000)
    wl = fixed_lengths([10] * 4, [1000] * 4)
    cfg = SearchConfig({"tpot": 5.0}, arrival="constant", precision=0.01)
    runs = RunCache(prof, Setup(1, 1), wl, cfg, prof.engine)
    res = sustained_rate(prof, Setup(1, 1), wl, cfg, runs=runs)
    assert res.bound_rps == pytest.approx(10.0)
    assert 1.3 <= res.sustained_rps <= 1.9  # 1.57, give or take what 3 E2Es of arrivals can show
    assert runs.runs[res.sustained_rps].steady and len(wl.repeated(2)) == 8
    assert runs.simulations > res.simulations  # ramps ran again, longer
    monkeypatch.setattr("planner.search.MAX_REPEATS", 1)  # ramps taken at face value
    assert sustained_rate(prof, Setup(1, 1), wl, cfg).sustained_rps > 9.5

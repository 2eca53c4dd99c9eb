"""The simulator against analytic answers, conservation laws, and a step-by-step run of itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from experiments.metrics import compute_summary
from experiments.schema import Record
from planner.engine import HOLD_RELEASE_S
from planner.outcome import request_metrics, summarize
from planner.profile_model import EngineLimits, FrontendModel, Profile, prefill_features
from planner.setups import Setup, parse_setup
from planner.simulate import SimulationError, simulate
from planner.workload import Workload, fixed_lengths
from tests.planner.profiles import make_profile


def run(profile, setup: str | Setup, workload: Workload, rate: float, seed: int = 0, **kw):
    s = parse_setup(setup) if isinstance(setup, str) else setup
    arrivals = workload.arrivals("poisson", rate, seed=seed)
    return simulate(profile, s, workload.prompt_tokens, workload.output_tokens, arrivals, rate=rate, **kw)


# ------------------------------------------------------------------------------------- analytic cases


@pytest.mark.parametrize("rho", [0.3, 0.6])
def test_md1_prefill_queue_matches_the_analytic_mean_ttft(rho: float) -> None:
    """Poisson arrivals, one fixed-time prefill per step, no KV time, a negligible decode step.

    M/D/1: mean wait Wq = rho*S / (2(1 - rho)), so mean TTFT = Wq + S + one decode step. With 200k
    requests the batch-means standard error of the mean is <= 0.5% of it (asserted), so 2% is a
    tolerance the statistics support, not a loose one.
    """
    service, step, n = 0.1, 1e-6, 200_000
    prof = make_profile(prefill=(service, 0.0, 0.0), decode=(step, 0.0, 0.0), budget=1000, max_seqs=1000)
    res = run(prof, "1P1D", fixed_lengths([1000] * n, [1] * n), rate=rho / service, seed=1)
    ttft = res.first_token_s - res.arrival_s
    expected = rho * service / (2 * (1 - rho)) + service + step
    batch_means = ttft.reshape(100, -1).mean(axis=1)
    std_error = batch_means.std(ddof=1) / np.sqrt(len(batch_means))
    assert 4 * std_error < 0.02 * expected
    assert ttft.mean() == pytest.approx(expected, rel=0.02)
    util = res.instances[0].busy_s / res.duration_s
    assert util == pytest.approx(rho, rel=0.02)


def test_fixed_decode_step_gives_exact_tpot_on_a_decode_instance() -> None:
    step = 0.005
    prof = make_profile(prefill=(0.02, 1e-5, 0.0), decode=(step, 0.0, 0.0))
    rng = np.random.default_rng(0)
    n = 3000
    wl = fixed_lengths(rng.integers(100, 2000, n).tolist(), rng.integers(2, 300, n).tolist())
    res = run(prof, "2P1D", wl, rate=20.0)
    m = request_metrics(res)
    assert np.allclose(m["tpot_ms"], step * 1e3, rtol=1e-9)
    assert max(s.max_batch for s in res.instances) > 10  # under real batching, not one at a time
    # On one instance prefill steps stall the decodes: TPOT is longer for most requests.
    single = request_metrics(run(prof, "single", wl, rate=10.0))
    assert np.all(single["tpot_ms"] >= step * 1e3 * (1 - 1e-9))
    assert np.mean(single["tpot_ms"] > step * 1e3 * 1.01) > 0.5


def test_chunked_prefill_of_a_long_prompt_alone() -> None:
    coef = (0.01, 2e-5, 1e-9)
    prof = make_profile(prefill=coef, decode=(0.004, 0.0, 0.0), budget=2048)
    res = run(prof, "single", fixed_lengths([5000], [1]), rate=1.0)
    steps, tokens, pairs = prefill_features(5000, 2048)
    assert steps == 3
    expected = coef[0] * steps + coef[1] * tokens + coef[2] * pairs
    assert res.first_token_s[0] - res.arrival_s[0] == pytest.approx(expected, rel=1e-12)
    assert res.instances[0].steps == 3


@pytest.mark.parametrize("d", [0.0, 3e-3])
def test_mixed_steps_follow_batch_and_context(d: float) -> None:
    """Two requests at t=0 on one instance, by hand: the second's prefill carries the first's decode.
    d: the decode step's batch^2 term (schema 3), in every step that decodes."""
    a, b, c, pre = 0.004, 1e-4, 1e-7, 0.01
    prof = make_profile(prefill=(pre, 0.0, 0.0), decode=(a, b, c, d), budget=4096)
    wl = fixed_lengths([1000, 1000], [11, 11])
    res = simulate(prof, Setup(0, 1), wl.prompt_tokens, wl.output_tokens, np.array([0.0, 0.0]))
    t = pre  # step 1: the engine was idle, it starts on the first request alone (first token)
    t += pre + b * 1 + c * 1001 + d  # step 2: second prompt + the first's decode (context 1000 + 1)
    assert res.first_token_s == pytest.approx([pre, t], rel=1e-12)
    g0, g1 = 2, 1  # tokens generated so far
    while g0 < 11:
        t += a + 2 * b + c * ((1000 + g0) + (1000 + g1)) + 4 * d
        g0, g1 = g0 + 1, g1 + 1
    end0 = t
    t += a + b + c * (1000 + g1) + d
    assert res.end_s == pytest.approx([end0, t], rel=1e-12)
    assert res.instances[0].steps == 12 and res.instances[0].output_tokens == 22


# ------------------------------------------------------------------------------------- conservation


def test_replicas_halve_the_load_per_instance() -> None:
    # No per-step intercepts: busy time is then exactly the work (tokens x cost), however batched.
    prof = make_profile(prefill=(0.0, 1e-4, 0.0), decode=(0.0, 2e-3, 0.0))
    rng = np.random.default_rng(3)
    wl = fixed_lengths(rng.integers(100, 2000, 6000).tolist(), rng.integers(2, 100, 6000).tolist())
    one = run(prof, "single", wl, rate=4.0)
    two = run(prof, "replicas:2", wl, rate=8.0)
    assert [s.admitted for s in two.instances] == [3000, 3000]
    work = 1e-4 * wl.prompt_tokens + 2e-3 * (wl.output_tokens - 1)
    assert one.instances[0].busy_s == pytest.approx(work.sum(), rel=1e-9)
    assert sum(s.busy_s for s in two.instances) == pytest.approx(work.sum(), rel=1e-9)
    util_one = one.instances[0].busy_s / one.duration_s
    for s in two.instances:  # every other request each: half the work in half the time
        assert s.busy_s / two.duration_s == pytest.approx(util_one, rel=0.03)


@pytest.mark.parametrize("policy", ["round_robin", "least_outstanding"])
def test_xpyd_conserves_requests_tokens_and_time_order(policy: str) -> None:
    kv_base, kv_tok = 0.003, 2e-6
    prof = make_profile(prefill=(0.01, 2e-5, 1e-9), decode=(0.005, 2e-5, 1e-8), kv_latency_s=kv_base,
                        kv_seconds_per_token=kv_tok)  # fmt: skip
    rng = np.random.default_rng(4)
    n = 3001
    wl = fixed_lengths(rng.integers(50, 3000, n).tolist(), rng.integers(1, 200, n).tolist())
    res = run(prof, Setup(2, 3, policy), wl, rate=30.0)
    pre = [s for s in res.instances if s.role == "prefill"]
    dec = [s for s in res.instances if s.role == "decode"]
    assert sum(s.admitted for s in pre) == n and sum(s.admitted for s in dec) == n
    if policy == "round_robin":
        assert sorted(s.admitted for s in pre) == [1500, 1501]
        assert sorted(s.admitted for s in dec) == [1000, 1000, 1001]
    assert sum(s.output_tokens for s in dec) == int(wl.output_tokens.sum())
    assert all(s.output_tokens == 0 for s in pre)
    assert np.all(res.prefill_end_s > res.arrival_s)
    assert np.allclose(res.kv_ready_s - res.prefill_end_s, kv_base + kv_tok * wl.prompt_tokens)
    assert np.all(res.first_token_s > res.kv_ready_s)
    assert np.all(res.end_s >= res.first_token_s)
    for s in res.instances:
        assert 0 < s.busy_s <= res.duration_s * (1 + 1e-12)


@pytest.mark.parametrize(
    "setup",
    ["single", "1P2D", Setup(0, 3, "least_outstanding"), "1P2D/threshold:1500", "1P1D/load:2000:16"],
)
def test_fast_forward_equals_one_event_per_step(setup: str | Setup) -> None:
    prof = make_profile(prefill=(0.01, 2e-5, 1e-9), decode=(0.004, 3e-5, 2e-8), kv_latency_s=0.002)
    rng = np.random.default_rng(7)
    n = 1500
    wl = fixed_lengths(rng.integers(20, 3000, n).tolist(), rng.integers(1, 120, n).tolist())
    fast = run(prof, setup, wl, rate=12.0)
    slow = run(prof, setup, wl, rate=12.0, fast_forward=False)
    assert slow.events > 2 * fast.events
    if "/" in str(setup):  # a per-request policy: decode instances prefill their local requests too
        assert fast.local is not None and 0 < fast.local.mean() < 1
        assert np.array_equal(fast.local, slow.local)
    for key in ("first_token_s", "end_s", "prefill_end_s"):
        assert np.allclose(getattr(fast, key), getattr(slow, key), rtol=1e-9, atol=1e-9), key
    for a, b in zip(fast.instances, slow.instances, strict=True):
        assert (a.steps, a.output_tokens, a.admitted) == (b.steps, b.output_tokens, b.admitted)
        assert a.dynamic_j == pytest.approx(b.dynamic_j, rel=1e-9)


# ------------------------------------------------------------------------------------- limits


def test_max_num_seqs_caps_the_decode_batch() -> None:
    prof = make_profile(prefill=(0.001, 0.0, 0.0), decode=(0.01, 0.0, 0.0), max_seqs=8, budget=2048)
    wl = fixed_lengths([100] * 500, [50] * 500)
    res = run(prof, "1P1D", wl, rate=100.0)
    assert max(s.max_batch for s in res.instances) == 8


def test_kv_capacity_limits_how_many_sequences_decode_together() -> None:
    # Each request reserves (100 + 60) tokens = 10 blocks of 16; 64 blocks hold 6 requests.
    prof = make_profile(prefill=(0.001, 0.0, 0.0), decode=(0.01, 0.0, 0.0), kv_tokens=64 * 16)
    wl = fixed_lengths([100] * 300, [60] * 300)
    res = run(prof, "1P1D", wl, rate=200.0)
    assert max(s.max_batch for s in res.instances if s.role == "decode") == 6
    with pytest.raises(SimulationError, match="KV tokens"):
        run(prof, "1P1D", fixed_lengths([2000], [10]), rate=1.0)


def test_engine_limits_can_be_overridden() -> None:
    prof = make_profile(prefill=(0.001, 0.0, 0.0), decode=(0.01, 0.0, 0.0), max_seqs=64)
    wl = fixed_lengths([100] * 300, [60] * 300)
    res = run(prof, "1P1D", wl, rate=500.0, limits=EngineLimits(2048, 4, 10_000))
    assert max(s.max_batch for s in res.instances) == 4


# ------------------------------------------------------------------------------------- outcome


def test_latencies_and_goodput_agree_with_experiments_metrics() -> None:
    prof = make_profile(prefill=(0.02, 2e-5, 0.0), decode=(0.006, 1e-5, 1e-8))
    rng = np.random.default_rng(2)
    n = 800
    wl = fixed_lengths(rng.integers(100, 2000, n).tolist(), rng.integers(1, 100, n).tolist())
    res = run(prof, "single", wl, rate=6.0)
    slo = {"ttft": 200.0, "tpot": 12.0}
    ours = summarize(res, prof.power, slo)
    records = []
    for i in range(n):
        sent, first, end = (
            round(float(t) * 1e9) for t in (res.arrival_s[i], res.first_token_s[i], res.end_s[i])
        )
        chunks = [first, end] if wl.output_tokens[i] > 1 else [first]
        records.append(Record(index=i, ok=True, status=200, sent_mono_ns=sent, first_token_mono_ns=first,
                              end_mono_ns=end, chunk_mono_ns=chunks,
                              completion_tokens=int(wl.output_tokens[i]),
                              prompt_tokens=int(wl.prompt_tokens[i])))  # fmt: skip
    ref = compute_summary(records, slo)
    assert 0 < ref.good_requests < n  # the SLO bites: the comparison means something
    assert ours.goodput_rps == pytest.approx(ref.goodput, rel=1e-6)
    assert ours.attainment == pytest.approx(ref.good_requests / n)
    for key in ("ttft_ms", "tpot_ms", "e2el_ms"):
        for stat in ("mean", "p50", "p99", "count"):
            want = getattr(getattr(ref, key), stat)
            assert getattr(ours, key)[stat] == pytest.approx(want, rel=1e-6, abs=1e-5), (key, stat)


def test_energy_splits_into_idle_static_and_per_step_dynamic() -> None:
    idle, pre_w = 100.0, 500.0
    prof = make_profile(prefill=(0.05, 0.0, 0.0), decode=(0.005, 0.0, 0.0), power=(idle, pre_w, 300.0, 0.0))
    wl = fixed_lengths([500] * 400, [20] * 400)
    res = run(prof, "1P1D", wl, rate=5.0)
    out = summarize(res, prof.power, {"ttft": 1000.0})
    e = out.energy
    assert e.available and e.gpus == 2
    assert e.static_j == pytest.approx(idle * res.duration_s * 2)
    pre, dec = res.instances
    assert pre.dynamic_j == pytest.approx((pre_w - idle) * pre.busy_s)
    assert dec.dynamic_j == pytest.approx((300.0 - idle) * dec.busy_s)  # flat decode power here
    assert pre.busy_s == pytest.approx(0.05 * pre.steps)
    assert e.j_per_request == pytest.approx((e.static_j + e.dynamic_j) / 400)
    none = summarize(res, make_profile(power=None).power)
    assert (
        not none.energy.available and none.energy.j_per_request is None and "no power" in none.energy.reason
    )


# ------------------------------------------------------------------------- API server and connector time


def test_api_server_time_delays_requests_without_occupying_the_engine() -> None:
    """Each instance a request enters holds it fe(n) = 5 ms + 1 us/token before its engine sees it."""
    base = make_profile(prefill=(0.02, 1e-5, 0.0), decode=(0.004, 0.0, 0.0), kv_latency_s=0.003)
    prof = dataclasses.replace(base, frontend=FrontendModel(0.005, 1e-6, "test"))
    fe, prefill = 0.005 + 1e-6 * 1000, 0.02 + 1e-5 * 1000
    alone = fixed_lengths([1000], [3])
    one = simulate(prof, Setup(0, 1), alone.prompt_tokens, alone.output_tokens, np.array([1.0]))
    assert one.first_token_s[0] - 1.0 == pytest.approx(fe + prefill)
    pair = simulate(prof, Setup(1, 1), alone.prompt_tokens, alone.output_tokens, np.array([1.0]))
    # P's API server, the prefill, the KV, D's API server, then D's first step
    assert pair.first_token_s[0] - 1.0 == pytest.approx(fe + prefill + 0.003 + fe + 0.004)
    # arrivals every 25 ms: the engine (prefill 30 ms) saturates alike with or without the delay
    wl = fixed_lengths([1000] * 400, [1] * 400)
    arrivals = np.arange(400) * 0.025
    busy = [simulate(p, Setup(0, 1), wl.prompt_tokens, wl.output_tokens, arrivals) for p in (base, prof)]
    assert busy[1].instances[0].busy_s == pytest.approx(busy[0].instances[0].busy_s)
    assert busy[1].end_s[-1] - busy[0].end_s[-1] == pytest.approx(fe, abs=1e-9)


def test_an_instances_api_server_takes_one_request_at_a_time() -> None:
    """A burst reaches the engine in arrival order, each after the API-server work of those before it:
    a long prompt first delays a short one (a trace's burst of long prompts queues in the front end)."""
    base = make_profile(prefill=(0.02, 1e-5, 0.0), decode=(0.004, 0.0, 0.0))
    prof = dataclasses.replace(base, frontend=FrontendModel(0.005, 1e-6, "test"))
    burst = fixed_lengths([30_000, 1000], [2, 2])
    run = simulate(prof, Setup(0, 1), burst.prompt_tokens, burst.output_tokens, np.array([0.0, 0.0]))
    fe_long, fe_short = 0.005 + 0.030, 0.005 + 0.001
    assert run.scheduled_s[0] == pytest.approx(fe_long)  # the engine takes it at once
    # the short one left the API server at fe_long + fe_short, while the long prefill ran (FCFS behind it)
    assert run.scheduled_s[1] >= fe_long + fe_short - 1e-12
    assert run.first_token_s[1] > run.first_token_s[0]
    # two replicas: each instance has its own API server, so the second request waits for none
    two = simulate(prof, Setup(0, 2), burst.prompt_tokens, burst.output_tokens, np.array([0.0, 0.0]))
    assert two.scheduled_s.tolist() == pytest.approx([fe_long, fe_short])


def test_the_prefill_sides_own_latency_is_beside_the_gpu() -> None:
    base = make_profile(prefill=(0.02, 0.0, 0.0), decode=(1e-5, 0.0, 0.0), budget=1000)
    prof = dataclasses.replace(
        base, kv_transfer=dataclasses.replace(base.kv_transfer, prefill_overhead_s=0.01)
    )
    wl = fixed_lengths([1000] * 300, [1] * 300)
    arrivals = np.arange(300) * 0.001  # far past capacity: the prefill GPU works back to back
    res = simulate(prof, Setup(1, 1), wl.prompt_tokens, wl.output_tokens, arrivals)
    assert res.instances[0].busy_s == pytest.approx(300 * 0.02)  # no GPU time on P
    alone = fixed_lengths([1000], [1])
    one = [
        simulate(p, Setup(1, 1), alone.prompt_tokens, alone.output_tokens, np.array([1.0]))
        for p in (base, prof)
    ]
    assert one[1].first_token_s[0] - one[0].first_token_s[0] == pytest.approx(0.01)


def _held(hold: int) -> Profile:
    base = make_profile(prefill=(0.02, 0.0, 0.0), decode=(1e-5, 0.0, 0.0), budget=1000)
    return dataclasses.replace(
        base, kv_transfer=dataclasses.replace(base.kv_transfer, prefill_hold=bool(hold))
    )


def test_a_held_prompt_leaves_with_the_next_steps_end_and_a_chain_one_step_apart() -> None:
    """P2P NCCL on vLLM 0.23: a prompt done in step k leaves at the end of step k+1 (results/h200x2)."""
    wl = fixed_lengths([1000] * 3, [1] * 3)
    arrivals = np.array([1.0, 1.005, 1.010])  # one 20 ms step each, back to back: 1.02, 1.04, 1.06
    free, held = (
        simulate(_held(h), Setup(1, 1), wl.prompt_tokens, wl.output_tokens, arrivals) for h in (False, True)
    )
    assert free.prefill_end_s == pytest.approx([1.02, 1.04, 1.06])
    assert held.prefill_end_s == pytest.approx(free.prefill_end_s)  # the engine's own times don't move
    left = held.first_token_s - free.first_token_s  # released: 1.04, 1.06, then a release step
    assert left == pytest.approx([0.02, 0.02, HOLD_RELEASE_S])
    busy = [r.instances[0].busy_s for r in (free, held)]
    assert busy[1] - busy[0] == pytest.approx(HOLD_RELEASE_S)


def test_a_plain_instance_never_holds() -> None:
    wl = fixed_lengths([1000] * 3, [1] * 3)
    arrivals = np.array([1.0, 1.005, 1.010])
    a, b = (
        simulate(_held(h), Setup(0, 1), wl.prompt_tokens, wl.output_tokens, arrivals) for h in (False, True)
    )
    assert a.first_token_s == pytest.approx(b.first_token_s)

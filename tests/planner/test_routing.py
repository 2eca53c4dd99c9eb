"""The planner's per-request policies (the one rule, testbed/route_rule.py, tested there by hand) as the
simulator applies them, on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from planner.outcome import request_metrics
from planner.search import SearchConfig, capacity_bound, sustained_rate
from planner.setups import Setup, parse_setup
from planner.simulate import simulate
from planner.workload import fixed_lengths
from tests.planner.profiles import make_profile


def test_setups_name_their_policy_and_refuse_one_without_a_prefill_side() -> None:
    assert parse_setup("1P1D/threshold:1024") == Setup(1, 1, route="threshold:1024")
    assert parse_setup("2p2d load").name == "2P2D load:4096:32"
    assert parse_setup("1P1D").name == "1P1D"
    assert parse_setup("1p1d THRESHOLD:0100").route == "threshold:100"  # lower case, one spelling
    with pytest.raises(ValueError, match="needs an xPyD"):
        parse_setup("single/local")
    with pytest.raises(ValueError, match="unknown policy"):
        parse_setup("1P1D/sometimes")


def _at_zero(setup: Setup, prompts: list[int], outs: list[int], **profile):
    prof = make_profile(**profile)
    wl = fixed_lengths(prompts, outs)
    arrivals = np.arange(len(prompts), dtype=float) * 10.0  # far apart: every request alone
    return simulate(prof, setup, wl.prompt_tokens, wl.output_tokens, arrivals)


def test_local_requests_prefill_on_the_decode_instance_and_leave_prefill_idle() -> None:
    """Alone on a decode instance, a local request costs what it costs on one instance: TTFT = the
    prefill step (pa + pb*L), then one decode step per token; no KV transfer."""
    pa, pb, step = 0.01, 1e-5, 0.005
    res = _at_zero(Setup(1, 1, route="local"), [1000, 3000], [5, 5], prefill=(pa, pb, 0.0),
                   decode=(step, 0.0, 0.0), kv_latency_s=0.5, budget=4096)  # fmt: skip
    assert res.local is not None and res.local.tolist() == [True, True]
    ttft = res.first_token_s - res.arrival_s
    assert ttft == pytest.approx([pa + pb * 1000, pa + pb * 3000], rel=1e-12)
    assert res.end_s - res.first_token_s == pytest.approx([4 * step, 4 * step], rel=1e-12)
    assert np.all(np.isnan(res.kv_ready_s))
    prefill, decode = res.instances
    assert (prefill.role, prefill.admitted, prefill.busy_s) == ("prefill", 0, 0.0)
    assert decode.admitted == 2


def test_threshold_splits_the_long_prompt_only_and_pays_its_kv_transfer() -> None:
    pa, pb, step, kv = 0.01, 1e-5, 0.005, 0.5
    res = _at_zero(Setup(1, 1, route="threshold:2000"), [1000, 3000], [5, 5], prefill=(pa, pb, 0.0),
                   decode=(step, 0.0, 0.0), kv_latency_s=kv, budget=4096)  # fmt: skip
    assert res.local is not None and res.local.tolist() == [True, False]
    ttft = res.first_token_s - res.arrival_s
    # split: prefill on P, the KV's latency, then D's first step makes the first token
    assert ttft == pytest.approx([pa + pb * 1000, pa + pb * 3000 + kv + step], rel=1e-12)
    assert np.isnan(res.kv_ready_s[0]) and not np.isnan(res.kv_ready_s[1])
    assert [s.admitted for s in res.instances] == [1, 2]


def test_load_goes_local_once_the_prefill_side_holds_enough_tokens() -> None:
    """Three 1000-token prompts at t = 0, 0.001, 0.002; P takes 1 s per prompt (one at a time:
    budget 1000). load:2000: the first two split (P holds 0, then 1000 tokens), the third finds 2000
    in flight and goes local; with the decode side full (load:2000:2) it splits."""
    prof = make_profile(prefill=(1.0, 0.0, 0.0), decode=(0.001, 0.0, 0.0), budget=1000)
    wl = fixed_lengths([1000] * 3, [4] * 3)
    arrivals = np.array([0.0, 0.001, 0.002])
    for route, expected in (("load:2000:32", [False, False, True]), ("load:2000:2", [False, False, False])):
        res = simulate(prof, Setup(1, 1, route=route), wl.prompt_tokens, wl.output_tokens, arrivals)
        assert res.local is not None and res.local.tolist() == expected, route
    res = simulate(prof, Setup(1, 1, route="load:2000"), wl.prompt_tokens, wl.output_tokens, arrivals)
    assert res.first_token_s[2] - arrivals[2] == pytest.approx(1.0, rel=1e-9)  # D was idle: one step


def test_capacity_bounds_by_hand() -> None:
    """Prefill costs b*L = L ms (no intercept, no attention term), a decode token costs nothing."""
    prof = make_profile(prefill=(0.0, 1e-3, 0.0), decode=(0.0, 0.0, 0.0))
    wl = fixed_lengths([100, 300], [1, 1])  # 0.1 s and 0.3 s of prefill; mean 0.2 s
    limits = prof.engine
    assert capacity_bound(prof, Setup(1, 1), wl, limits) == pytest.approx(1 / 0.2)
    assert capacity_bound(prof, Setup(1, 1, route="local"), wl, limits) == pytest.approx(1 / 0.2)
    # threshold:200 splits the 300-token prompt: P does 0.15 s per request, D 0.05 s
    assert capacity_bound(prof, Setup(1, 1, route="threshold:200"), wl, limits) == pytest.approx(1 / 0.15)
    # load may split any share: both sides share 0.2 s of work per request, 0.1 s each
    assert capacity_bound(prof, Setup(1, 1, route="load"), wl, limits) == pytest.approx(1 / 0.1)


def test_a_hybrid_policy_sustains_more_than_both_pure_ones_where_prefill_limits_the_split() -> None:
    """1P1D with prefill-heavy requests: splitting all queues on P, local-all stalls D's decodes
    with every prefill; splitting only the long prompts uses both GPUs for prefill."""
    prof = make_profile(prefill=(0.002, 5e-5, 0.0), decode=(0.004, 1e-5, 0.0))
    rng = np.random.default_rng(3)
    wl = fixed_lengths(rng.choice([256, 4096], 1500).tolist(), [16] * 1500)
    cfg = SearchConfig(slo={"ttft": 2000.0}, requests_per_gpu=750, min_requests=1500)
    rate = {r: sustained_rate(prof, Setup(1, 1, route=r), wl, cfg).sustained_rps
            for r in ("split", "local", "threshold:1024")}  # fmt: skip
    assert rate["threshold:1024"] > 1.1 * max(rate["split"], rate["local"]), rate
    arrivals = wl.arrivals("poisson", rate["threshold:1024"])
    hybrid = simulate(prof, Setup(1, 1, route="threshold:1024"), wl.prompt_tokens, wl.output_tokens, arrivals)
    m = request_metrics(hybrid)
    assert np.all(np.isfinite(m["e2el_ms"]))  # every request finished

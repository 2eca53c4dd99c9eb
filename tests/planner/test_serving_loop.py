"""The serving loop's two terms by hand: async scheduling (a request joins the step after next) and the
API server's time per streamed chunk (a step's first tokens leave after the step's other chunks)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from planner.profile_model import Profile, ServingLoopModel
from planner.setups import parse_setup
from planner.simulate import simulate
from tests.planner.profiles import make_profile

PREFILL_S, DECODE_S = 0.020, 0.005  # every prefill step 20 ms, every decode step 5 ms (no other terms)


def loop_profile(
    async_scheduling: bool = False, per_output_s: float = 0.0, decode_s: float = DECODE_S
) -> Profile:
    base = make_profile(prefill=(PREFILL_S, 0.0, 0.0), decode=(decode_s, 0.0, 0.0), power=None)
    return dataclasses.replace(base, loop=ServingLoopModel(async_scheduling, per_output_s, "test"))


def ttft_ms(
    profile: Profile, arrivals: list[float], outs: list[int], setup: str = "single", **kw
) -> list[float]:
    n = len(arrivals)
    res = simulate(profile, parse_setup(setup), np.full(n, 100), np.array(outs), np.array(arrivals), **kw)
    return [round(x, 9) for x in (res.first_token_s - res.arrival_s) * 1e3]


def test_a_request_on_an_idle_engine_is_scheduled_at_once_either_way() -> None:
    assert ttft_ms(loop_profile(False), [0.0], [10]) == [20.0]
    assert ttft_ms(loop_profile(True), [0.0], [10]) == [20.0]


def test_async_scheduling_puts_a_request_arriving_mid_step_one_step_later() -> None:
    """A (t=0, 100 tokens out) prefills 0-20 ms. B arrives at 12 ms, during that step.

    Synchronous: B joins the step composed at 20 ms (20-40 ms, prefill plus A's decode riding along):
    TTFT 40 - 12 = 28 ms. Async: the step starting at 20 ms was composed at 0 ms, without B, so it is A's
    decode alone (20-25 ms) and B's prefill runs 25-45 ms: TTFT 33 ms, one decode step more."""
    assert ttft_ms(loop_profile(False), [0.0, 0.012], [100, 100]) == [20.0, 28.0]
    assert ttft_ms(loop_profile(True), [0.0, 0.012], [100, 100]) == [20.0, 33.0]


def test_async_scheduling_cuts_a_run_of_decode_steps_one_step_later() -> None:
    """A decodes in 5 ms steps from 20 ms (fast-forwarded as one run). B arrives at 31 ms, in the step
    30-35 ms; the step 35-40 ms was composed at 30 ms, so B prefills 40-60 ms (sync: 35-55 ms)."""
    for fast in (True, False):
        assert ttft_ms(loop_profile(False), [0.0, 0.031], [100, 100], fast_forward=fast) == [20.0, 24.0]
        assert ttft_ms(loop_profile(True), [0.0, 0.031], [100, 100], fast_forward=fast) == [20.0, 29.0]


def test_a_first_token_leaves_after_every_chunk_of_its_step() -> None:
    """1 ms per streamed chunk. A alone: its step has one output, TTFT 20 + 1 ms. B's step (20-40 ms)
    streams A's token and then B's: B's first token leaves at 40 + 2 ms, TTFT 42 - 12 = 30 ms."""
    prof = loop_profile(False, per_output_s=0.001)
    assert ttft_ms(prof, [0.0, 0.012], [100, 100]) == [21.0, 30.0]


def test_the_output_lag_on_a_decode_instance_counts_its_batch() -> None:
    """1P1D, 1 ms per chunk, 6 ms decode steps, no KV time: A's prompt is done at 20 ms, its first decode
    step is 20-26 ms with one output: 27 ms. B's prompt is done at 40 ms, during A's step 38-44 ms; B
    joins at 44 ms and its first step 44-50 ms carries two outputs: 52 ms, TTFT 52 - 12 = 40 ms."""
    prof = loop_profile(False, per_output_s=0.001, decode_s=0.006)
    assert ttft_ms(prof, [0.0, 0.012], [100, 100], setup="1P1D") == [27.0, 40.0]


def test_async_scheduling_leaves_a_pd_pair_as_its_kv_terms_measured_it() -> None:
    """The prefill hold and the prefill side's latency were measured on a P/D pair: they hold its loop."""
    arrivals, outs = [0.0, 0.012, 0.031], [100, 100, 100]
    assert ttft_ms(loop_profile(True), arrivals, outs, "1P1D") == ttft_ms(
        loop_profile(False), arrivals, outs, "1P1D"
    )


@pytest.mark.parametrize("setup", ["single", "replicas:2", "1P1D"])
def test_fast_forward_agrees_with_one_event_per_step_under_the_loop(setup: str) -> None:
    rng = np.random.default_rng(3)
    n = 400
    prompt, out = rng.integers(50, 3000, n), rng.integers(1, 200, n)
    arrivals = np.sort(rng.uniform(0, 20.0, n))
    prof = loop_profile(True, per_output_s=30e-6, decode_s=0.0053)  # steps whose ends never coincide
    a = simulate(prof, parse_setup(setup), prompt, out, arrivals, fast_forward=True)
    b = simulate(prof, parse_setup(setup), prompt, out, arrivals, fast_forward=False)
    assert np.allclose(a.first_token_s, b.first_token_s, rtol=0, atol=1e-9)
    assert np.allclose(a.end_s, b.end_s, rtol=0, atol=1e-9)


def test_profiles_without_a_serving_loop_read_as_synchronous_without_lag() -> None:
    prof = loop_profile(True, per_output_s=35e-6)
    data = prof.to_dict()
    assert Profile.from_dict(data).loop == ServingLoopModel(True, 35e-6, "test")
    old = {k: v for k, v in data.items() if k != "serving_loop"} | {"schema_version": 3}
    assert Profile.from_dict(old).loop == ServingLoopModel()
    assert not ServingLoopModel().async_scheduling and ServingLoopModel().output_lag_s(500) == 0.0

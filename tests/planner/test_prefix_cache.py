"""The simulator's prefix cache: LRU semantics by hand, and a cached prompt's prefill step by hand."""

from __future__ import annotations

import numpy as np
import pytest

from planner.prefix_cache import PrefixCache
from planner.setups import parse_setup
from planner.simulate import Prefix, simulate
from tests.planner.profiles import make_profile


def test_the_cache_serves_the_leading_blocks_it_holds_and_evicts_the_least_recently_used() -> None:
    cache = PrefixCache(capacity_tokens=2 * 4, block_tokens=4)  # room for two blocks of 4 tokens
    assert cache.admit((0, 1), 9) == 0  # nothing cached yet; both blocks stored
    assert cache.admit((0, 1), 9) == 8  # both blocks served
    assert cache.admit((0, 1), 8) == 7  # the last prompt token is always computed
    assert cache.admit((2,), 5) == 0  # stored: 0 (least recently used) is evicted
    assert cache.admit((0, 1), 9) == 0  # the chain starts with an evicted block: nothing served
    # ... and both are stored again, most recent last: 2 is evicted, 1 is kept
    assert cache.admit((1,), 5) == 4 and cache.admit((2,), 5) == 0
    assert (cache.hit_tokens, cache.query_tokens) == (19, 50)


def test_a_cached_prefix_is_not_computed_again_but_still_attended_to() -> None:
    a, b, c = 0.01, 2e-5, 1e-9
    prof = make_profile(prefill=(a, b, c), decode=(0.004, 0.0, 0.0), budget=4096)
    prompt, out = np.array([1024, 1024]), np.array([1, 1])
    arrivals = np.array([0.0, 10.0])  # the second comes to an idle instance
    single = parse_setup("single")
    cold = simulate(prof, single, prompt, out, arrivals)
    warm = simulate(prof, single, prompt, out, arrivals, prefix=Prefix(((0, 1), (0, 1)), 512))
    ttft = lambda run: run.first_token_s - run.arrival_s  # noqa: E731
    assert ttft(warm)[0] == pytest.approx(a + b * 1024 + c * 1024 * 1024)  # first one: all computed
    # 1023 tokens served from the cache: one token computed, attending to 1024 (pairs 1 * (1023 + 1))
    assert ttft(warm)[1] == pytest.approx(a + b * 1 + c * 1024)
    assert ttft(cold)[1] == pytest.approx(ttft(cold)[0])
    assert warm.instances[0].prefix_hit_rate == pytest.approx(1023 / 2048)
    assert cold.instances[0].prefix_hit_rate is None

"""A run too short for its load to settle is flagged (arrivals under 3 mean E2E latencies)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.schema import Record
from experiments.timing_checks import Ramp, find_ramp, steady_state_warning

S = 1_000_000_000


def _runs(n: int, gap_s: float, e2e_s: float) -> list[Record]:
    out = []
    for i in range(n):
        sent = round(i * gap_s * S)
        first = sent + S // 10
        end = sent + round(e2e_s * S)
        out.append(Record(index=i, ok=True, status=200, sent_mono_ns=sent, first_token_mono_ns=first,
                          end_mono_ns=end, chunk_mono_ns=[first, end], completion_tokens=2))  # fmt: skip
    return out


def test_long_requests_at_a_high_rate_are_not_a_steady_state() -> None:
    # 200 requests at 12 req/s (16.6 s of arrivals) lasting 10 s each: ~120 in flight, a ramp.
    w = steady_state_warning(_runs(200, 1 / 12, 10.0))
    assert w is not None and "not a steady state" in w.message and "120 requests are in flight" in w.message
    # observed: the arrival window (199 gaps of 1/12 s) in mean E2Es (10 s); threshold 3
    assert (w.code, w.threshold) == ("not_steady", 3.0) and w.observed == pytest.approx(199 / 12 / 10.0)


def test_arrivals_lasting_three_lifetimes_are_fine() -> None:
    assert steady_state_warning(_runs(200, 1 / 4, 1.5)) is None  # 50 s of arrivals, 1.5 s each
    assert steady_state_warning(_runs(31, 1.0, 10.0)) is None  # exactly 30 s = 3 x 10 s
    assert steady_state_warning(_runs(30, 1.0, 10.0)) is not None  # 29 s: just short
    assert steady_state_warning(_runs(1, 1.0, 10.0)) is None  # nothing to judge


def test_simulated_arrivals_go_through_the_same_check() -> None:
    # The planner passes arrival seconds and E2E ms as arrays: 30 arrivals 1 s apart lasting 10 s each
    # span 29 s < 3 x 10 s; 31 at that rate would span 30 s.
    found = find_ramp(np.arange(30.0), np.full(30, 10_000.0))
    assert found == Ramp(window_s=29.0, e2e_s=10.0, requests=30)
    assert found.rate == 1.0 and found.requests_needed == 31
    assert find_ramp(np.arange(31.0), np.full(31, 10_000.0)) is None
    # Everything at once: no rate, so no count to suggest; all 5 are in flight together.
    burst = find_ramp(np.zeros(5), np.full(5, 1_000.0))
    assert (
        burst is not None
        and burst.requests_needed is None
        and "about 5 requests are in flight" in burst.warning()
    )

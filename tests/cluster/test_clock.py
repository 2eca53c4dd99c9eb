"""monitor.clock: a remote clock's offset, bounded by the round trip that read it."""

from __future__ import annotations

import time

import pytest

from monitor.clock import ClockOffset, estimate_offset, measure_offset


def test_the_shortest_round_gives_the_estimate_and_its_bound() -> None:
    # Remote clock 5_000 ns ahead. Round 1: sent at 100, read at remote 5_300 (local 300), back at 900.
    # Round 2 (tighter): sent at 1_000, read at 6_050 (local 1_050), back at 1_100.
    est = estimate_offset([(100, 5_300, 900), (1_000, 6_050, 1_100)])
    assert est == ClockOffset(offset_ns=6_050 - 1_050, bound_ns=50, rtt_ns=100, rounds=2)
    assert abs(est.offset_ns - 5_000) <= est.bound_ns
    assert est.to_local(6_050) == 1_050


def test_the_bound_holds_wherever_in_the_round_the_remote_read_happened() -> None:
    # The read at the very start or the very end of a 400 ns round: the estimate is off by 200 = bound.
    for local_read in (0, 400):
        est = estimate_offset([(0, 7_000 + local_read, 400)])
        assert est.bound_ns == 200 and abs(est.offset_ns - 7_000) <= est.bound_ns


def test_rounds_that_go_back_in_time_or_none_at_all_are_refused() -> None:
    with pytest.raises(ValueError, match="went back"):
        estimate_offset([(10, 0, 5)])
    with pytest.raises(ValueError, match="no clock rounds"):
        estimate_offset([])


def test_a_planted_offset_behind_a_slow_asymmetric_link_is_recovered() -> None:
    planted = -3_250_000_000  # the remote clock 3.25 s behind
    calls = []

    def remote() -> int:
        # Asymmetric: 2 ms on the way there, read, 0 on the way back (the worst case for the estimate).
        time.sleep(0.002)
        calls.append(1)
        return time.time_ns() + planted

    est = measure_offset(remote, rounds=5)
    assert len(calls) == 5 and est.rounds == 5
    assert est.rtt_ns >= 2_000_000 and est.bound_ns == (est.rtt_ns + 1) // 2
    assert abs(est.offset_ns - planted) <= est.bound_ns

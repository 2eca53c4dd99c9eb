"""The one sustained-rate rule (analysis/sustained.py), on hand-derived sweeps: the highest rate meeting
the level, interpolated toward the next rate above it, a re-pass after a miss, the realized offered-rate
axis against the nominal one, and the fallback to the nominal rate."""

from __future__ import annotations

import math

import pytest

from analysis.sustained import SweepPoint, offered_rate, sustained_rate


def sweep(nominal: list[float], realized: list[float | None], att: list[float]) -> list[SweepPoint]:
    pts = []
    for n, r, a in zip(nominal, realized, att, strict=True):
        rate, ok = offered_rate(n, [r])
        pts.append(SweepPoint(n, rate, a, ok))
    return pts


def test_interpolates_from_the_highest_rate_meeting_the_level_toward_the_next() -> None:
    s = sustained_rate(sweep([12, 4, 8], [12, 4, 8], [0.5, 1.0, 0.95]), 0.9)  # any order
    # 8 meets (95%), 12 misses (50%): 8 + (0.95 - 0.9) / (0.95 - 0.5) * (12 - 8) = 8 + 0.05 / 0.45 * 4
    # = 8 + 4 / 9 = 8.444...
    assert s.bound == "interpolated" and s.rate == pytest.approx(8 + 4 / 9)
    assert (s.passing and s.passing.nominal, s.failing and s.failing.nominal) == (8, 12)
    assert s.fraction == pytest.approx(1 / 9)
    assert not s.non_monotone and not s.nominal_axis


def test_a_re_pass_after_a_miss_counts_and_is_flagged() -> None:
    # 4: 100%, 8: 80% (miss), 12: 95% (meets again), 16: 60%. The highest rate meeting 90% is 12, so
    # 12 + (0.95 - 0.9) / (0.95 - 0.6) * 4 = 12 + 0.05 / 0.35 * 4 = 12 + 4 / 7 = 12.571...
    # (stopping at the first miss would have given 4 + 0.1 / 0.2 * 4 = 6)
    s = sustained_rate(sweep([4, 8, 12, 16], [4, 8, 12, 16], [1.0, 0.8, 0.95, 0.6]), 0.9)
    assert s.bound == "interpolated" and s.rate == pytest.approx(12 + 4 / 7)
    assert s.non_monotone


def test_the_axis_is_the_realized_rate_and_the_nominal_stays_the_label() -> None:
    # Prefill-heavy 1P1D-like sweep: nominal 12 / 16 / 20 arrived at 11.5 / 14.7 / 19.1 req/s.
    # 16 meets (93%), 20 misses (63%): 14.7 + (0.93 - 0.9) / (0.93 - 0.63) * (19.1 - 14.7)
    # = 14.7 + 0.1 * 4.4 = 15.14 req/s; on the nominal axis 16 + 0.1 * 4 = 16.4
    realized = sustained_rate(sweep([12, 16, 20], [11.5, 14.7, 19.1], [1.0, 0.93, 0.63]), 0.9)
    assert realized.rate == pytest.approx(15.14)
    assert realized.passing == SweepPoint(16, 14.7, 0.93) and realized.passing.text() == "16 (14.7)"
    nominal = sustained_rate(sweep([12, 16, 20], [12, 16, 20], [1.0, 0.93, 0.63]), 0.9)
    assert nominal.rate == pytest.approx(16.4)


def test_repeats_average_their_realized_rates_and_a_missing_one_falls_back_to_nominal() -> None:
    assert offered_rate(16, [14.7, 15.1]) == (pytest.approx(14.9), True)  # (14.7 + 15.1) / 2
    assert offered_rate(16, [14.7, None]) == (16, False)
    assert offered_rate(16, []) == (16, False)
    # 8 arrived at 7.6, 12 recorded none (stands at 12): 7.6 + (1 - 0.9) / (1 - 0.8) * (12 - 7.6) = 9.8
    s = sustained_rate(sweep([8, 12], [7.6, None], [1.0, 0.8]), 0.9)
    assert s.rate == pytest.approx(9.8) and s.nominal_axis
    assert s.failing is not None and s.failing.text() == "12 (nominal)"


def test_every_rate_met_is_a_lower_bound_and_none_met_an_upper_bound() -> None:
    up = sustained_rate(sweep([4, 8], [3.9, 7.7], [1.0, 0.9]), 0.9)  # exactly 90% meets
    assert (up.bound, up.rate, up.interval) == ("at_least", 7.7, (7.7, math.inf))
    assert up.text() == ">= 7.7" and up.fraction == 0.0
    down = sustained_rate(sweep([4, 8], [4.2, 8.1], [0.2, 0.95]), 0.9)  # a re-pass at 8 counts
    assert (down.bound, down.rate) == ("at_least", 8.1) and down.non_monotone
    never = sustained_rate(sweep([4, 8], [4.2, 8.1], [0.2, 0.5]), 0.9)
    assert (never.bound, never.rate, never.interval) == ("below", 4.2, (0.0, 4.2))
    assert never.text() == "< 4.2" and never.passing is None and never.failing is not None


def test_bad_sweeps_are_refused() -> None:
    with pytest.raises(ValueError):
        sustained_rate([])
    with pytest.raises(ValueError, match="pool repeats"):
        sustained_rate([SweepPoint(4, 4, 1.0), SweepPoint(4, 4, 0.5)])

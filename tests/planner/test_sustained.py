"""The SLO-sustaining rate of a sweep (interpolated between bracketing rates) and the rate criterion."""

from __future__ import annotations

import math

import pytest

from planner.sustained import SustainedRate, compare_rates, interpolate_sustained


def test_interpolates_between_the_last_passing_and_the_first_failing_rate() -> None:
    s = interpolate_sustained([12, 4, 8], [0.5, 1.0, 0.95], 0.9)  # any order
    assert s.bound == "interpolated"
    assert s.rate == pytest.approx(8 + (0.95 - 0.9) / (0.95 - 0.5) * 4)
    assert (s.passing, s.failing) == ((8, 0.95), (12, 0.5))


def test_every_rate_met_is_a_lower_bound_and_none_met_an_upper_bound() -> None:
    up = interpolate_sustained([4, 8], [1.0, 0.9], 0.9)
    assert (up.bound, up.rate, up.interval) == ("at_least", 8, (8, math.inf))
    assert up.text() == ">= 8"
    down = interpolate_sustained([4, 8], [0.2, 0.95], 0.9)
    assert (down.bound, down.rate, down.interval) == ("below", 4, (0.0, 4))
    assert down.text() == "< 4"


def test_a_rate_that_meets_the_target_again_after_a_miss_does_not_count() -> None:
    s = interpolate_sustained([4, 8, 12, 16], [1.0, 0.8, 0.95, 1.0], 0.9)
    assert s.bound == "interpolated" and 4 < s.rate < 8


@pytest.mark.parametrize(("rates", "att"), [([], []), ([4, 8], [1.0]), ([4, 4], [1.0, 0.5])])
def test_bad_sweeps_are_refused(rates: list[float], att: list[float]) -> None:
    with pytest.raises(ValueError):
        interpolate_sustained(rates, att)


def _at(rate: float) -> SustainedRate:
    return SustainedRate(rate, "interpolated", None, None)


@pytest.mark.parametrize(
    ("measured", "predicted", "verdict", "low", "high"),
    [
        (_at(10), _at(11.4), "pass", 0.14, 0.14),
        (_at(10), _at(8.4), "miss", 0.16, 0.16),
        # both sustain every rate of the sweep: they may agree, or not
        (SustainedRate(20, "at_least", None, None), SustainedRate(20, "at_least", None, None), "undetermined",
         0.0, math.inf),
        # measured at least 24, predicted 21.4: agree only if the measured rate is below 25.2
        (SustainedRate(24, "at_least", None, None), _at(21.4), "undetermined", 2.6 / 24, 1.0),
        # measured at least 24, predicted 15: at least 37.5% off whatever the true rate
        (SustainedRate(24, "at_least", None, None), _at(15), "miss", 9 / 24, 1.0),
        # predicted below the lowest rate (4) against a measured 10: at least 60% off
        (_at(10), SustainedRate(4, "below", None, None), "miss", 0.6, math.inf),
    ],
)  # fmt: skip
def test_rate_criterion_over_the_intervals(
    measured: SustainedRate, predicted: SustainedRate, verdict: str, low: float, high: float
) -> None:
    a = compare_rates(measured, predicted, 0.15)
    assert a.verdict == verdict
    assert a.min_error == pytest.approx(low)
    assert a.max_error == pytest.approx(high)

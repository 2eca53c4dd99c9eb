"""The rate criterion: a predicted sustained rate against a measured one, over the intervals they allow
(the sustained rate itself: tests/analysis/test_sustained.py)."""

from __future__ import annotations

import math

import pytest

from analysis.sustained import SustainedRate
from planner.sustained import compare_rates


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

"""The SLO-sustaining rate of a rate sweep, interpolated, and how two such rates compare.

Kept small and apart so it can be swapped for the analysis wing's frontier code once that has one:
`interpolate_sustained(rates, attainments, target)` walks the sweep upward to the first rate whose SLO
attainment falls below the target and interpolates linearly between it and the rate below (the two
bracketing rates are kept). A sweep that meets the target at every rate sustains *at least* its highest
rate; one that misses at its lowest sustains *less than* its lowest. A later rate that meets the target
again after a miss does not count (noise, or a loose SLO in a finite run past saturation).

`compare_rates` judges a predicted against a measured rate with a relative tolerance over the interval
each one stands for: "pass" when every value in both intervals agrees within it, "miss" when none
does, "undetermined" otherwise (e.g. both sustain every rate of the sweep).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Bound = Literal["interpolated", "at_least", "below"]
Verdict = Literal["pass", "miss", "undetermined"]


@dataclass(frozen=True)
class SustainedRate:
    """`rate` is the interpolated rate, or for "at_least" the highest and for "below" the lowest rate."""

    rate: float
    bound: Bound
    passing: tuple[float, float] | None  # (rate, attainment) of the last rate meeting the target
    failing: tuple[float, float] | None  # (rate, attainment) of the first rate missing it

    @property
    def interval(self) -> tuple[float, float]:
        """The values this result allows: exactly `rate`, [highest, inf) or [0, lowest)."""
        if self.bound == "at_least":
            return (self.rate, math.inf)
        if self.bound == "below":
            return (0.0, self.rate)
        return (self.rate, self.rate)

    def text(self) -> str:
        if self.bound == "at_least":
            return f">= {self.rate:.3g}"
        if self.bound == "below":
            return f"< {self.rate:.3g}"
        return f"{self.rate:.3g}"


def interpolate_sustained(
    rates: Sequence[float], attainments: Sequence[float], target: float = 0.9
) -> SustainedRate:
    """Highest rate with attainment >= target, interpolated between the bracketing rates."""
    if len(rates) != len(attainments) or not rates:
        raise ValueError("give one attainment per rate, at least one rate")
    points = sorted(zip(rates, attainments, strict=True))
    if len({r for r, _ in points}) != len(points):
        raise ValueError(f"a rate appears twice in {sorted(rates)}: one attainment per rate")
    prev: tuple[float, float] | None = None
    for rate, att in points:
        if att < target:
            if prev is None:
                return SustainedRate(rate, "below", None, (rate, att))
            (r0, a0), (r1, a1) = prev, (rate, att)
            return SustainedRate(r0 + (a0 - target) / (a0 - a1) * (r1 - r0), "interpolated", prev, (r1, a1))
        prev = (rate, att)
    assert prev is not None
    return SustainedRate(prev[0], "at_least", prev, None)


@dataclass(frozen=True)
class RateAgreement:
    verdict: Verdict
    min_error: float  # smallest |predicted - measured| / measured the two intervals allow
    max_error: float  # largest (inf when unbounded)


def _rel(p: float, m: float) -> float:
    if m == 0:
        return 0.0 if p == 0 else math.inf
    if math.isinf(m):
        return math.inf if math.isinf(p) else 1.0
    return abs(p - m) / m


def compare_rates(measured: SustainedRate, predicted: SustainedRate, tolerance: float) -> RateAgreement:
    (ml, mh), (pl, ph) = measured.interval, predicted.interval
    corners = [_rel(p, m) for p in (pl, ph) for m in (ml, mh)]
    if pl <= mh and ml <= ph:  # the intervals overlap: they may agree exactly
        low = 0.0
    elif pl > mh:
        low = _rel(pl, mh)
    else:
        low = _rel(ph, ml)
    high = max(corners)
    if measured.bound == "below" or predicted.bound == "below":
        high = math.inf  # a rate somewhere below the lowest one tried: no relative error is bounded
    if high <= tolerance:
        verdict: Verdict = "pass"
    elif low > tolerance:
        verdict = "miss"
    else:
        verdict = "undetermined"
    return RateAgreement(verdict, low, high)

"""How a predicted sustained rate compares with a measured one.

The sustained rate itself is `analysis.sustained.sustained_rate`, the one rule the frontier uses too (the
highest measured rate meeting the level, interpolated toward the next rate above it, on the realized
offered-rate axis). `compare_rates` judges a predicted against a measured rate with a relative tolerance
over the interval each one stands for: "pass" when every value in both intervals agrees within it,
"miss" when none does, "undetermined" otherwise (e.g. both sustain every rate of the sweep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from analysis.sustained import SustainedRate

Verdict = Literal["pass", "miss", "undetermined"]


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

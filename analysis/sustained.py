"""The sustained rate of a rate sweep: one rule, used by the SLO frontier and by the planner's validation.

The rule (DistServe's "highest rate whose attainment >= 90%", with the level as a parameter): order the
sweep's points by offered rate and take the HIGHEST measured rate whose attainment meets the level
(>= level, up to `EPS`: attainments are ratios of counts); interpolate linearly toward the next measured
rate above it, which misses (it is higher than the highest one meeting). A rate that meets the level
again after a miss at a lower rate counts: it is the highest meeting it; the dip below is flagged
(`non_monotone`) for the reader, not used to stop the walk. Every rate meeting the level gives "at_least"
the highest rate (a lower bound); none meeting it, "below" the lowest.

The axis is the REALIZED offered rate: a sample of Poisson arrivals arrives at up to ~10% off the nominal
rate (200 requests asked for at 16 req/s arrived at 14.7), so each point stands at the rate that arrived,
the client's `summary.arrival_rate` averaged over the repeats of one nominal rate (`offered_rate`). The
nominal rate stays the point's label. A point without a realized rate (a run that recorded none) stands
at its nominal rate and is flagged (`SweepPoint.realized` False, `SustainedRate.nominal_axis`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Bound = Literal["interpolated", "at_least", "below"]
EPS = 1e-12  # attainments are ratios of counts: equal to the level means meeting it


@dataclass(frozen=True)
class SweepPoint:
    """One offered rate of a sweep (repeats pooled): where it stands on the axis, and its attainment."""

    nominal: float  # the rate asked for: the point's label
    rate: float  # the axis: the realized offered rate (mean over repeats), the nominal where none is known
    attainment: float
    realized: bool = True  # False: no realized rate recorded, the nominal stands in

    def text(self) -> str:
        """The nominal rate with the realized one (the axis) in brackets: '16 (14.7)', or '16 (nominal)'
        where no realized rate is known."""
        return f"{self.nominal:g} ({self.rate:.3g})" if self.realized else f"{self.nominal:g} (nominal)"


def offered_rate(nominal: float, realized: Sequence[float | None]) -> tuple[float, bool]:
    """The axis value of one nominal rate: the mean realized rate of its repeats and True, or the nominal
    and False when a repeat recorded no realized rate (or there is none)."""
    if not realized or any(r is None or not math.isfinite(r) for r in realized):
        return nominal, False
    return math.fsum(realized) / len(realized), True  # type: ignore[arg-type]


@dataclass(frozen=True)
class SustainedRate:
    """`rate` is the interpolated rate, or for "at_least" the highest and for "below" the lowest rate."""

    rate: float
    bound: Bound
    passing: SweepPoint | None  # the highest point meeting the level
    failing: SweepPoint | None  # the next point above it (the lowest point when none meets the level)
    non_monotone: bool = False  # a lower point misses the level although a higher one meets it
    nominal_axis: bool = False  # a point of the sweep stands at its nominal rate (no realized rate)

    @property
    def fraction(self) -> float:
        """Where `rate` lies from `passing` (0) to `failing` (1), to interpolate other figures alike."""
        if self.bound != "interpolated":
            return 0.0
        assert self.passing is not None and self.failing is not None
        return (self.rate - self.passing.rate) / (self.failing.rate - self.passing.rate)

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


def sustained_rate(points: Sequence[SweepPoint], level: float = 0.9) -> SustainedRate:
    """The highest offered rate with attainment >= `level`, interpolated (see the module docstring)."""
    if not points:
        raise ValueError("a sweep needs at least one rate")
    pts = sorted(points, key=lambda p: p.rate)
    if len({p.rate for p in pts}) != len(pts):
        rates = ", ".join(f"{p.text()}" for p in pts)
        raise ValueError(f"an offered rate appears twice on the axis ({rates}): pool repeats of a rate first")
    nominal_axis = not all(p.realized for p in pts)
    ok = [p.attainment >= level - EPS for p in pts]
    if not any(ok):
        return SustainedRate(pts[0].rate, "below", None, pts[0], nominal_axis=nominal_axis)
    k = max(i for i, good in enumerate(ok) if good)
    non_monotone = not all(ok[: k + 1])
    if k == len(pts) - 1:
        return SustainedRate(pts[k].rate, "at_least", pts[k], None, non_monotone, nominal_axis)
    low, high = pts[k], pts[k + 1]
    frac = min(1.0, max(0.0, (low.attainment - level) / (low.attainment - high.attainment)))
    rate = low.rate + frac * (high.rate - low.rate)
    return SustainedRate(rate, "interpolated", low, high, non_monotone, nominal_axis)

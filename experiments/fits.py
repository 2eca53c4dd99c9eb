"""Least-squares fits with non-negative coefficients and their stated error (numpy only).

Every latency and power model in a planner profile, and the energy attribution's power fit, is linear
in a few named features, e.g. prefill step time = a*steps + b*tokens + c*attention_pairs. Latencies
cannot shrink with more work, so coefficients are constrained to be >= 0: with at most a handful of
features, the exact non-negative least-squares solution is the best of the unconstrained solutions over
every feature subset that comes out non-negative (a tiny active-set search, no SciPy needed).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_FEATURES = 6  # the subset search is 2^k least-squares solves


class FitError(ValueError):
    """Too few or unusable points to fit a model."""


@dataclass(frozen=True)
class Fit:
    """y = sum(coefficients[i] * features[i]); error measured on the points it was fitted to.

    r2: coefficient of determination (1.0 when the points have no spread and the fit is exact).
    max_rel_error / rms_rel_error: |predicted - measured| / measured over the points.
    """

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    r2: float
    max_rel_error: float
    rms_rel_error: float
    n_points: int

    def __post_init__(self) -> None:
        if len(self.features) != len(self.coefficients):
            raise ValueError(
                f"fit has {len(self.features)} features but {len(self.coefficients)} coefficients"
            )

    def predict(self, values: Sequence[float]) -> float:
        return float(sum(c * v for c, v in zip(self.coefficients, values, strict=True)))

    def coefficient(self, feature: str) -> float:
        return self.coefficients[self.features.index(feature)]

    def describe(self) -> str:
        terms = " + ".join(f"{c:.4g}*{f}" for f, c in zip(self.features, self.coefficients, strict=True))
        return (
            f"{terms}  (R^2 {self.r2:.4f}, max rel error {100 * self.max_rel_error:.1f}%, "
            f"{self.n_points} points)"
        )


def _solve(x: np.ndarray, y: np.ndarray, cols: Sequence[int]) -> np.ndarray | None:
    """Unconstrained least squares on the given columns; None unless every coefficient is >= 0."""
    coef = np.zeros(x.shape[1])
    if cols:
        sol, *_ = np.linalg.lstsq(x[:, list(cols)], y, rcond=None)
        if np.any(sol < 0):
            return None
        coef[list(cols)] = sol
    return coef


def fit_nonnegative(
    features: Sequence[str], x: Sequence[Sequence[float]], y: Sequence[float], relative: bool = False
) -> Fit:
    """Least squares y ~ x @ c with c >= 0; `x` has one row per point and one column per feature.

    relative: minimise the relative errors (each row weighted by 1/y), for points that span orders of
    magnitude (a 17 ms and a 527 ms prefill): plain least squares would fit the large ones only.
    """
    k = len(features)
    xa = np.asarray(x, dtype=float) if len(x) else np.empty((0, k))  # no point: the count says so
    ya = np.asarray(y, dtype=float)
    if xa.ndim != 2 or xa.shape[1] != k or xa.shape[0] != ya.shape[0]:
        raise FitError(f"expected {len(ya)} rows of {k} features, got an array of shape {xa.shape}")
    if not 1 <= k <= MAX_FEATURES:
        raise FitError(f"a fit takes 1 to {MAX_FEATURES} features, got {k}")
    if len(ya) < k:
        raise FitError(f"need at least {k} points to fit {', '.join(features)}; got {len(ya)}: measure more")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise FitError("points must be finite numbers")
    if np.any(ya <= 0):
        raise FitError("measured values must be > 0 (a latency or a power)")
    xs, ys = (xa / ya[:, None], np.ones_like(ya)) if relative else (xa, ya)
    best: np.ndarray | None = None
    best_sse = np.inf
    for size in range(k, -1, -1):
        for cols in itertools.combinations(range(k), size):
            coef = _solve(xs, ys, cols)
            if coef is None:
                continue
            sse = float(np.sum((xs @ coef - ys) ** 2))
            if sse < best_sse * (1 - 1e-12):
                best, best_sse = coef, sse
    assert best is not None  # the empty subset always qualifies
    pred = xa @ best
    rel = np.abs(pred - ya) / ya
    best_sse = float(np.sum((pred - ya) ** 2))  # R^2 on the measured scale, whichever errors were fitted
    sst = float(np.sum((ya - ya.mean()) ** 2))
    if sst > 0:
        r2 = 1.0 - best_sse / sst
    else:
        r2 = 1.0 if best_sse <= 1e-18 * max(1.0, float(np.sum(ya**2))) else 0.0
    return Fit(
        features=tuple(features),
        coefficients=tuple(float(c) for c in best),
        r2=float(r2),
        max_rel_error=float(rel.max()),
        rms_rel_error=float(np.sqrt(np.mean(rel**2))),
        n_points=len(ya),
    )

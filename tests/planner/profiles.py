"""Profiles with chosen coefficients, for cases with known answers."""

from __future__ import annotations

from planner.fits import Fit
from planner.profile_model import (
    DECODE_FEATURES,
    DECODE_POWER_FEATURES,
    PREFILL_FEATURES,
    DecodeModel,
    EngineLimits,
    KvTransferModel,
    PowerModel,
    PrefillModel,
    Profile,
    Provenance,
)


def _fit(features: tuple[str, ...], coefficients: tuple[float, ...]) -> Fit:
    return Fit(features, coefficients, 1.0, 0.0, 0.0, len(coefficients))


def make_profile(
    prefill: tuple[float, float, float] = (0.01, 1e-5, 0.0),
    decode: tuple[float, ...] = (0.005, 0.0, 0.0),  # a, b, c[, d]: a + b*B + c*context_sum [+ d*B^2]
    kv_latency_s: float = 0.0,
    kv_seconds_per_token: float = 0.0,
    budget: int = 2048,
    max_seqs: int = 256,
    kv_tokens: int = 10_000_000,
    power: tuple[float, float, float, float] | None = (100.0, 500.0, 300.0, 50.0),
) -> Profile:
    """power: (idle W, prefill W, decode W at batch 1, decode W per ln(batch)) or None."""
    if power is None:
        pm = PowerModel(None, None, None, "test: no power")
    else:
        idle, pre, d0, d1 = power
        pm = PowerModel(idle, pre, _fit(DECODE_POWER_FEATURES, (d0, d1)))
    return Profile(
        provenance=Provenance(source="test", model="test"),
        engine=EngineLimits(budget, max_seqs, kv_tokens),
        prefill=PrefillModel(_fit(PREFILL_FEATURES, prefill)),
        decode=DecodeModel(_fit(DECODE_FEATURES[: len(decode)], decode)),
        kv_transfer=KvTransferModel(kv_latency_s, kv_seconds_per_token, 1.0, "test"),
        power=pm,
    )

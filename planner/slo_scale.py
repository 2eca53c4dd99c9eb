"""SLOs as multiples of a model's own unloaded latency (DistServe's "SLO scale").

One absolute SLO grid cannot serve models whose decode step alone differs 4x (the 8B's ~5 ms against the
dense 32B's and 70B's ~18-20 ms): half of it is out of reach for the large ones. An SLO scale s sets,
per model and workload, TTFT <= s x one request's TTFT alone and TPOT <= s x one request's TPOT alone,
both at the workload's median prompt and output (one scale for both bounds, as DistServe does). A scale
may also be a pair (TTFT scale, TPOT scale): `--slo-scale "ttft=2,5,10 tpot=2,3"` maps the cross product
of two scales, where a loose TTFT and a tight TPOT (off DistServe's diagonal) can be told apart.

One request alone, as the simulator serves it on one instance (tests/planner/test_slo_scale.py simulates
it): its first token leaves after the API server's time and its prefill steps (`Profile.client_prefill_s`)
plus the serving loop's lag for one output; each later token takes one batch-1 decode step, whose
context grows from the prompt to prompt + output, so the mean step is the step at prompt + output / 2
(the step is linear in the context).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from planner.profile_model import Profile

Scale = float | tuple[float, float]  # one scale for both bounds, or (TTFT scale, TPOT scale)
_HINT = (
    "give multiples of the unloaded latency, e.g. 2,3,5,10, or a cross product, e.g. 'ttft=2,5,10 tpot=2,3'"
)


def factors(scale: Scale) -> tuple[float, float]:
    """(TTFT scale, TPOT scale)."""
    return (scale, scale) if isinstance(scale, int | float) else (float(scale[0]), float(scale[1]))


@dataclass(frozen=True)
class Unloaded:
    """One request alone at a workload's median lengths: its TTFT and TPOT (ms)."""

    prompt_tokens: int
    output_tokens: int
    ttft_ms: float
    tpot_ms: float

    def bounds(self, scale: Scale) -> dict[str, float]:
        """The SLO at this scale, in ms (the keys of experiments/slo.py), rounded to 0.1 ms so that the
        bounds printed are the bounds searched."""
        t, p = factors(scale)
        return {"ttft": round(t * self.ttft_ms, 1), "tpot": round(p * self.tpot_ms, 1)}


def unloaded(profile: Profile, prompt_tokens: int, output_tokens: int) -> Unloaded:
    """TTFT and TPOT of one request alone on one instance of this profile (see the module docstring)."""
    ttft_s = profile.client_prefill_s(prompt_tokens) + profile.loop.output_lag_s(1)
    tpot_s = profile.decode.step_s(1, prompt_tokens + output_tokens / 2)
    return Unloaded(prompt_tokens, output_tokens, 1e3 * ttft_s, 1e3 * tpot_s)


def median_lengths(prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> tuple[int, int]:
    """The median prompt and output lengths, each a length one of the requests has (the lower median)."""
    return (
        int(np.percentile(prompt_tokens, 50, method="lower")),
        int(np.percentile(output_tokens, 50, method="lower")),
    )


def parse_scales(text: str) -> list[Scale]:
    """'2,3,5,10' -> [2.0, 3.0, 5.0, 10.0]; 'ttft=2,5 tpot=2,3' -> [(2, 2), (2, 3), (5, 2), (5, 3)] (TTFT
    scale, TPOT scale). Multiples of the unloaded latency, each > 1 (a request alone meets scale 1 only
    just), sorted, without repeats; a ValueError whose one line says what to write."""
    flag = f"--slo-scale {text!r}"
    if "=" not in text:
        return sorted(set(_multiples(text, flag)))
    axes: dict[str, list[float]] = {}
    for part in text.replace(";", " ").split():
        key, sep, values = part.partition("=")
        if not sep or key.strip().lower() not in ("ttft", "tpot") or key.strip().lower() in axes:
            raise ValueError(f"{flag}: {_HINT}")
        axes[key.strip().lower()] = sorted(set(_multiples(values, flag)))
    if set(axes) != {"ttft", "tpot"}:
        raise ValueError(f"{flag}: a cross product needs both ttft= and tpot= scales; {_HINT}")
    return list(itertools.product(axes["ttft"], axes["tpot"]))


def _multiples(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag}: {_HINT}") from None
    if not values or any(not v > 1 for v in values):
        raise ValueError(f"{flag}: give multiples above 1 of the unloaded latency, e.g. 2,3,5,10")
    return values


def scale_label(scale: Scale) -> str:
    if isinstance(scale, int | float):
        return f"scale {scale:g}x"
    t, p = factors(scale)
    return f"ttft {t:g}x tpot {p:g}x"


def scale_key(scale: Scale) -> str:
    """The scale as a JSON key: '2', or 'ttft=5,tpot=2' for a pair."""
    if isinstance(scale, int | float):
        return f"{scale:g}"
    t, p = factors(scale)
    return f"ttft={t:g},tpot={p:g}"


def scale_coords(scale: Scale) -> dict[str, float]:
    """Where a cell sits on the map's scale axes: {'scale': s}, or {'ttft_scale': t, 'tpot_scale': p}."""
    if isinstance(scale, int | float):
        return {"scale": float(scale)}
    t, p = factors(scale)
    return {"ttft_scale": t, "tpot_scale": p}


def scale_axes(scales: list[Scale]) -> tuple[list[float], list[float]]:
    """The distinct TTFT scales and TPOT scales, each sorted (a cross product's two axes)."""
    return sorted({factors(s)[0] for s in scales}), sorted({factors(s)[1] for s in scales})


def crossed(scales: list[Scale]) -> bool:
    """Whether the scales are a cross product of a TTFT and a TPOT scale (pairs), not one scale each."""
    return any(not isinstance(s, int | float) for s in scales)

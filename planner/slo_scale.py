"""SLOs as multiples of a model's own unloaded latency (DistServe's "SLO scale").

One absolute SLO grid cannot serve models whose decode step alone differs 4x (the 8B's ~5 ms against the
dense 32B's and 70B's ~18-20 ms): half of it is out of reach for the large ones. An SLO scale s sets,
per model and workload, TTFT <= s x one request's TTFT alone and TPOT <= s x one request's TPOT alone,
both at the workload's median prompt and output (one scale for both bounds, as DistServe does; not the
cross product of two scales).

One request alone, as the simulator serves it on one instance (tests/planner/test_slo_scale.py simulates
it): its first token leaves after the API server's time and its prefill steps (`Profile.client_prefill_s`)
plus the serving loop's lag for one output; each later token takes one batch-1 decode step, whose
context grows from the prompt to prompt + output, so the mean step is the step at prompt + output / 2
(the step is linear in the context).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.profile_model import Profile


@dataclass(frozen=True)
class Unloaded:
    """One request alone at a workload's median lengths: its TTFT and TPOT (ms)."""

    prompt_tokens: int
    output_tokens: int
    ttft_ms: float
    tpot_ms: float

    def bounds(self, scale: float) -> dict[str, float]:
        """The SLO at this scale, in ms (the keys of experiments/slo.py), rounded to 0.1 ms so that the
        bounds printed are the bounds searched."""
        return {"ttft": round(scale * self.ttft_ms, 1), "tpot": round(scale * self.tpot_ms, 1)}


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


def parse_scales(text: str) -> list[float]:
    """'2,3,5,10' -> [2.0, 3.0, 5.0, 10.0]: multiples of the unloaded latency, each > 1 (a request alone
    meets scale 1 only just), sorted, without repeats."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"--slo-scale {text!r}: give multiples of the unloaded latency, e.g. 2,3,5,10"
        ) from None
    if not values or any(not v > 1 for v in values):
        raise ValueError(
            f"--slo-scale {text!r}: give multiples above 1 of the unloaded latency, e.g. 2,3,5,10"
        )
    return sorted(set(values))


def scale_label(scale: float) -> str:
    return f"scale {scale:g}x"

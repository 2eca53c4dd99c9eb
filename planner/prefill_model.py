"""The prefill step model: a*steps + b*tokens + c*attention_pairs [+ e*eager_steps].

One request of N tokens prefilled alone in one step has steps = 1, tokens = N, attention_pairs = N^2 (so
this is a + b*N + c*N^2); a chunk of n tokens at offset o adds n*(o + n) pairs, which keeps chunked
prefills consistent.

eager_steps: vLLM replays a step of up to `graph_tokens` tokens (EngineLimits.cudagraph_max_tokens,
vLLM's max_cudagraph_capture_size, by default min(2 x max_num_seqs, 512)) as a CUDA graph and runs a
larger one eagerly, op by op. On one H200 that cost an MoE shape ~65 ms a step (qwen3-30b-a3b, vLLM
0.23: a prompt alone 37 ms at 512 tokens, 104 ms at 1024; results/h200/models/qwen3-30b-a3b/profile).
e is fitted only where the bound is known and the points have >= 2 prompts on each side of it; else
the fit is the three-feature one and e = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.fits import Fit

PREFILL_FEATURES = ("steps", "tokens", "attention_pairs")
EAGER_FEATURE = "eager_steps"
MIN_POINTS_PER_SIDE = 2  # prompts with and without an eager step each, to fit e apart from a and b


def prefill_features(prompt_tokens: int, budget: int, graph_tokens: int | None = None) -> tuple[float, ...]:
    """(steps, tokens, attention_pairs) of one prompt prefilled alone under a token budget per step; with
    `graph_tokens`, also eager_steps: its chunks of more tokens than that (run without CUDA graphs)."""
    steps, pairs, offset, eager = 0, 0, 0, 0
    while offset < prompt_tokens:
        chunk = min(budget, prompt_tokens - offset)
        pairs += chunk * (offset + chunk)
        offset += chunk
        steps += 1
        if graph_tokens is not None and chunk > graph_tokens:
            eager += 1
    features = (float(steps), float(prompt_tokens), float(pairs))
    return features if graph_tokens is None else (*features, float(eager))


def prefill_rows(
    prompts: Sequence[int], budget: int, graph_tokens: int | None
) -> tuple[tuple[str, ...], list[tuple[float, ...]]]:
    """The prefill fit's features and one row per prompt: eager_steps only with a graph bound and at
    least MIN_POINTS_PER_SIDE prompts on each side of it (else exactly the three-feature rows)."""
    if graph_tokens is not None:
        rows = [prefill_features(n, budget, graph_tokens) for n in prompts]
        eager = sum(1 for r in rows if r[3] > 0)
        if min(eager, len(rows) - eager) >= MIN_POINTS_PER_SIDE:
            return (*PREFILL_FEATURES, EAGER_FEATURE), rows
    return PREFILL_FEATURES, [prefill_features(n, budget) for n in prompts]


@dataclass(frozen=True)
class PrefillModel:
    """The fitted prefill step time; `graph_tokens`: the largest step replayed as a CUDA graph (None:
    not modelled, e.g. CPU or an older profile), beyond which a step pays `eager_s` more."""

    fit: Fit
    graph_tokens: int | None = None

    def __post_init__(self) -> None:
        if EAGER_FEATURE in self.fit.features and self.graph_tokens is None:
            raise ValueError(f"a prefill fit with {EAGER_FEATURE} needs cudagraph_max_tokens")

    def _coef(self, feature: str) -> float:
        return self.fit.coefficient(feature) if feature in self.fit.features else 0.0

    @property
    def terms(self) -> tuple[float, float, float]:
        """(a, b, c) of a*steps + b*tokens + c*attention_pairs."""
        a, b, c = (self._coef(f) for f in PREFILL_FEATURES)
        return a, b, c

    @property
    def eager_s(self) -> float:
        """e: seconds a step of more than graph_tokens tokens costs beyond the fit's a, b, c (0: none)."""
        return self._coef(EAGER_FEATURE)

    @property
    def eager_above(self) -> int | None:
        """The step size (prefill and decode tokens) past which a step pays eager_s; None where nothing
        is paid (no graph bound, or no fitted eager term)."""
        return self.graph_tokens if self.eager_s > 0 else None

    def eager(self, step_tokens: int) -> bool:
        """Whether a step of `step_tokens` tokens (prefill and decode) pays eager_s."""
        bound = self.eager_above
        return bound is not None and step_tokens > bound

    def step_s(self, tokens: float, pairs: float) -> float:
        """One step holding `tokens` prefill tokens with `pairs` attention pairs (no decodes)."""
        a, b, c = self.terms
        return a + b * tokens + c * pairs + (self.eager_s if self.eager(int(tokens)) else 0.0)

    def request_s(self, prompt_tokens: int, budget: int) -> float:
        """A prompt prefilled alone, chunked under `budget` tokens per step."""
        graph = self.graph_tokens if EAGER_FEATURE in self.fit.features else None
        return self.fit.predict(prefill_features(prompt_tokens, budget, graph))

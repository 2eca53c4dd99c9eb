"""The proxy's per-request policies as the simulator applies them (proxy/policy.py, same names and rule).

- `split`: every request prefills on a prefill instance, decodes on a decode instance;
- `local`: the decode instance serves it whole (prefill included), no KV moves;
- `threshold:N`: split when the prompt has >= N tokens, else local;
- `load[:P_TOKENS[:D_REQUESTS]]`: local when the least-loaded prefill instance has >= P_TOKENS prompt
  tokens in flight (acquired, prompt not yet done) and the chosen decode instance has < D_REQUESTS
  requests outstanding (acquired, not finished); else split. Defaults 4096 and 32.

The planner cannot import the proxy (tests/test_architecture.py), so the rule is written twice; the
tests check both on the same hand-made cases.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLIT, LOCAL = "split", "local"
LOAD_P_TOKENS = 4096
LOAD_D_REQUESTS = 32


@dataclass(frozen=True)
class Route:
    kind: str = SPLIT
    threshold: int = 0
    p_tokens: int = LOAD_P_TOKENS
    d_requests: int = LOAD_D_REQUESTS

    @property
    def name(self) -> str:
        if self.kind == "threshold":
            return f"threshold:{self.threshold}"
        if self.kind == "load":
            return f"load:{self.p_tokens}:{self.d_requests}"
        return self.kind

    def decide(self, prompt_tokens: int, p_tokens_in_flight: int, d_outstanding: int) -> str:
        if self.kind == SPLIT:
            return SPLIT
        if self.kind == LOCAL:
            return LOCAL
        if self.kind == "threshold":
            return SPLIT if prompt_tokens >= self.threshold else LOCAL
        if p_tokens_in_flight >= self.p_tokens and d_outstanding < self.d_requests:
            return LOCAL
        return SPLIT


def parse_route(text: str) -> Route:
    """`split`, `local`, `threshold:N` or `load[:P_TOKENS[:D_REQUESTS]]`; ValueError says what to write."""
    kind, _, rest = text.strip().lower().partition(":")
    hint = "write split, local, threshold:N or load[:P_TOKENS[:D_REQUESTS]]"
    parts = rest.split(":") if rest else []
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"policy {text!r}: parameters are whole numbers; {hint}") from None
    if any(v < 0 for v in values):
        raise ValueError(f"policy {text!r}: parameters must be >= 0; {hint}")
    if kind in (SPLIT, LOCAL) and not values:
        return Route(kind)
    if kind == "threshold" and len(values) == 1:
        return Route(kind, threshold=values[0])
    if kind == "load" and len(values) <= 2:
        defaults = [LOAD_P_TOKENS, LOAD_D_REQUESTS]
        p_tokens, d_requests = values + defaults[len(values) :]
        return Route(kind, p_tokens=p_tokens, d_requests=d_requests)
    raise ValueError(f"unknown policy {text!r}; {hint}")

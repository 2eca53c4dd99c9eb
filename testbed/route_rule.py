"""The per-request route rule: which path a request takes, `split` (P then D) or `local` (D alone).

- `split`: every request is prefilled on a prefill instance and decoded on a decode instance.
- `local`: the decode instance serves the whole request, prefill included; no KV moves, P sits idle.
- `threshold:N`: split when the prompt has >= N tokens, else local (llm-d's selective P/D).
- `load[:P_TOKENS[:D_REQUESTS]]`: split, unless the prefill side is backed up and the decode side has
  room: local when the least-loaded prefill instance in rotation has >= P_TOKENS prompt tokens in
  flight (prefill legs sent and not yet answered) AND the chosen decode instance has < D_REQUESTS
  requests outstanding (acquired and not finished, split ones included). Defaults 4096 and 32.

One rule, read by both sides: the proxy applies it to each request (proxy/handler.py; proxy/policy.py
counts the prompt's tokens; check_route_connector says whether a connector can serve a local request),
the planner simulates
it (planner/simulate.py, planner/search.py). It lives on the testbed floor because the planner may not
import the proxy (tests/test_architecture.py). Pure: no I/O, no first-party import.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLIT, LOCAL = "split", "local"
ROUTE_KINDS = (SPLIT, LOCAL, "threshold", "load")
LOAD_P_TOKENS = 4096
LOAD_D_REQUESTS = 32
_HINT = "use split, local, threshold:N or load[:P_TOKENS[:D_REQUESTS]]"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """One of ROUTE_KINDS with its parameters; `name` is the spelling `parse_route_policy` reads back."""

    kind: str = SPLIT
    threshold: int = 0  # threshold: split at >= this many prompt tokens
    p_tokens: int = LOAD_P_TOKENS  # load: prefill side backed up at >= this many tokens in flight
    d_requests: int = LOAD_D_REQUESTS  # load: decode side has room below this many outstanding requests

    def __post_init__(self) -> None:
        if self.kind not in ROUTE_KINDS:
            raise ValueError(f"unknown policy {self.kind!r}; {_HINT}")

    @property
    def name(self) -> str:
        if self.kind == "threshold":
            return f"threshold:{self.threshold}"
        if self.kind == "load":
            return f"load:{self.p_tokens}:{self.d_requests}"
        return self.kind

    @property
    def needs_tokens(self) -> bool:
        """The rule reads the prompt's token count."""
        return self.kind in ("threshold", "load")

    @property
    def uses_prefill(self) -> bool:
        return self.kind != LOCAL

    def decide(self, prompt_tokens: int, p_tokens_in_flight: int, d_outstanding: int) -> str:
        """SPLIT or LOCAL for one request. `p_tokens_in_flight`: the least-loaded prefill instance's
        prompt tokens in flight; `d_outstanding`: the chosen decode instance's requests (before this)."""
        if self.kind == SPLIT:
            return SPLIT
        if self.kind == LOCAL:
            return LOCAL
        if self.kind == "threshold":
            return SPLIT if prompt_tokens >= self.threshold else LOCAL
        backed_up = p_tokens_in_flight >= self.p_tokens
        return LOCAL if backed_up and d_outstanding < self.d_requests else SPLIT


def _whole(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{what} must be a whole number >= 0, got {text!r}; {_HINT}")
    return value


def parse_route_policy(text: str) -> RoutePolicy:
    """`split`, `local`, `threshold:N` or `load[:P_TOKENS[:D_REQUESTS]]` -> RoutePolicy; a ValueError
    whose one line says what to write."""
    kind, _, rest = text.strip().partition(":")
    if kind in (SPLIT, LOCAL):
        if rest:
            raise ValueError(f"policy {text!r} takes no parameter; {_HINT}")
        return RoutePolicy(kind)
    if kind == "threshold":
        if not rest:
            raise ValueError(f"policy threshold needs its prompt length, e.g. threshold:1024; {_HINT}")
        return RoutePolicy(kind, threshold=_whole(rest, "threshold:N"))
    if kind == "load":
        parts = rest.split(":") if rest else []
        if len(parts) > 2:
            raise ValueError(f"policy {text!r} has too many parameters; {_HINT}")
        p_tokens = _whole(parts[0], "load's P_TOKENS") if parts else LOAD_P_TOKENS
        d_requests = _whole(parts[1], "load's D_REQUESTS") if len(parts) > 1 else LOAD_D_REQUESTS
        return RoutePolicy(kind, p_tokens=p_tokens, d_requests=d_requests)
    raise ValueError(f"unknown policy {text!r}; {_HINT}")


def check_route_connector(policy: RoutePolicy, connector: str) -> None:
    """A ValueError when `connector` cannot serve the requests `policy` keeps local: a pass-through proxy
    never splits, and a P2P NCCL kv_consumer expects the KV of every prompt (reference/proxy_protocol.md).
    The proxy (proxy/policy.py) and the launcher (disagg/plan.py, before any instance starts) ask it."""
    if policy.kind == SPLIT or connector not in ("passthrough", "p2p_nccl"):
        return
    why = (
        "passthrough never splits"
        if connector == "passthrough"
        else "a P2P NCCL kv_consumer cannot: it expects the KV of every prompt from the prefill peer named "
        "in the request id"
    )
    raise ValueError(
        f"--policy {policy.name} needs decode instances that can serve a request alone, and {why} "
        "(reference/proxy_protocol.md): use --policy split, or the nixl or example connector"
    )

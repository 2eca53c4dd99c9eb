"""Per-request disaggregation policy: which path a request takes, `split` (P then D) or `local` (D alone).

- `split`: every request is prefilled on a prefill instance and decoded on a decode instance.
- `local`: the decode instance serves the whole request, prefill included; no KV moves, P sits idle.
- `threshold:N`: split when the prompt has >= N tokens, else local (llm-d's selective P/D).
- `load[:P_TOKENS[:D_REQUESTS]]`: split, unless the prefill side is backed up and the decode side has
  room: local when the least-loaded prefill instance in rotation has >= P_TOKENS prompt tokens in
  flight (prefill legs sent and not yet answered) AND the chosen decode instance has < D_REQUESTS
  requests outstanding (acquired and not finished, split ones included). Defaults 4096 and 32.

The planner simulates the same rule (planner/simulate.py); the prompt's tokens are counted by
`PromptCounter` (a tokenizer when given, else ceil(characters / 4), llm-d's estimate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.config import ConfigError

SPLIT, LOCAL = "split", "local"
PATHS = (SPLIT, LOCAL)
KINDS = ("split", "local", "threshold", "load")
LOAD_P_TOKENS = 4096
LOAD_D_REQUESTS = 32
CHARS_PER_TOKEN = 4  # llm-d's estimate of a prompt's tokens without a tokenizer


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """One of KINDS with its parameters; `name` is the spelling `parse_policy` reads back."""

    kind: str = SPLIT
    threshold: int = 0  # threshold: split at >= this many prompt tokens
    p_tokens: int = LOAD_P_TOKENS  # load: prefill side backed up at >= this many tokens in flight
    d_requests: int = LOAD_D_REQUESTS  # load: decode side has room below this many outstanding requests

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


def _positive(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{what} must be a whole number >= 0, got {text!r}")
    return value


def parse_policy(text: str) -> RoutePolicy:
    """`split`, `local`, `threshold:N` or `load[:P_TOKENS[:D_REQUESTS]]` -> RoutePolicy."""
    kind, _, rest = text.strip().partition(":")
    hint = "use split, local, threshold:N or load[:P_TOKENS[:D_REQUESTS]]"
    if kind in (SPLIT, LOCAL):
        if rest:
            raise ConfigError(f"policy {text!r} takes no parameter; {hint}")
        return RoutePolicy(kind)
    if kind == "threshold":
        if not rest:
            raise ConfigError(f"policy threshold needs its prompt length, e.g. threshold:1024; {hint}")
        return RoutePolicy(kind, threshold=_positive(rest, "threshold:N"))
    if kind == "load":
        parts = rest.split(":") if rest else []
        if len(parts) > 2:
            raise ConfigError(f"policy {text!r} has too many parameters; {hint}")
        p_tokens = _positive(parts[0], "load's P_TOKENS") if parts else LOAD_P_TOKENS
        d_requests = _positive(parts[1], "load's D_REQUESTS") if len(parts) > 1 else LOAD_D_REQUESTS
        return RoutePolicy(kind, p_tokens=p_tokens, d_requests=d_requests)
    raise ConfigError(f"unknown policy {text!r}; {hint}")


def check_policy(policy: RoutePolicy, connector: str) -> None:
    """ConfigError when `connector` cannot serve this policy's local requests (proxy_protocol.md)."""
    if policy.kind == SPLIT:
        return
    if connector == "passthrough":
        raise ConfigError(
            f"--policy {policy.name} chooses between a P/D split and the decode instance alone; "
            "passthrough never splits: drop --policy or give --prefill/--decode"
        )
    if connector == "p2p_nccl":
        raise ConfigError(
            f"--policy {policy.name} needs decode instances that can serve a request alone, and a P2P NCCL "
            "kv_consumer cannot: it expects the KV of every prompt from the prefill peer named in the "
            "request id (reference/proxy_protocol.md); use --policy split, or NIXL (vLLM >= 0.24)"
        )


def prompt_text(body: dict[str, Any]) -> str | list[int]:
    """What the prompt is, as text (chat: the messages' contents joined) or token ids."""
    prompt = body.get("prompt")
    if prompt is None:  # chat
        parts = []
        for msg in body.get("messages") or []:
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # content parts: their text
                texts = (p.get("text") for p in content if isinstance(p, dict))
                parts += [t for t in texts if isinstance(t, str)]
        return "\n".join(parts)
    if isinstance(prompt, str):
        return prompt
    if all(isinstance(x, int) for x in prompt):
        return prompt
    if all(isinstance(x, str) for x in prompt):  # a batch of prompts: routed as one
        return "\n".join(prompt)
    return [t for p in prompt if isinstance(p, list) for t in p if isinstance(t, int)]


class PromptCounter:
    """Counts a prompt's tokens: token ids by their number, text with the tokenizer if one was given
    (`--tokenizer`), else ceil(characters / 4). `method` names which, for the serving setup."""

    def __init__(self, tokenizer: str | None = None) -> None:
        self._encode: Callable[[str], int] | None = None
        self.method = f"estimate: ceil(characters / {CHARS_PER_TOKEN})"
        if tokenizer is not None:
            self._encode = _load_tokenizer(tokenizer)
            self.method = f"tokenizer {tokenizer}"

    def count(self, prompt: str | list[int]) -> int:
        if isinstance(prompt, list):
            return len(prompt)
        if self._encode is not None:
            return self._encode(prompt)
        return math.ceil(len(prompt) / CHARS_PER_TOKEN)


def _load_tokenizer(path: str) -> Callable[[str], int]:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError("--tokenizer needs the transformers package (vLLM installs it)") from None
    if not Path(path).is_dir():
        raise ConfigError(f"--tokenizer {path}: no such model directory (give the served model's)")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tokenizer {path}: cannot load a tokenizer: {exc}") from None

    def encode(text: str) -> int:
        return len(tok(text, add_special_tokens=True)["input_ids"])

    return encode

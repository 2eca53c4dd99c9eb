"""The proxy's side of the per-request route rule (testbed/route_rule.py: split, local, threshold:N,
load[:P_TOKENS[:D_REQUESTS]]): `--policy` read and checked against the connector, and the prompt's tokens
the rule reads, counted by `PromptCounter` (a tokenizer when given, else ceil(characters / 4), llm-d's
estimate). The planner simulates the same rule object (planner/simulate.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.config import ConfigError
from testbed.route_rule import RoutePolicy, check_route_connector, parse_route_policy

CHARS_PER_TOKEN = 4  # llm-d's estimate of a prompt's tokens without a tokenizer


def route_policy_for(text: str, connector: str) -> RoutePolicy:
    """`--policy text` as a RoutePolicy; ConfigError when it does not parse or when `connector` cannot
    serve its local requests (check_route_connector)."""
    try:
        policy = parse_route_policy(text)
        check_route_connector(policy, connector)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return policy


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

"""How the fake answers: a `FakeBehavior` per server, per scripted request, or per named mode.

A request's behaviour is, first match wins: the next scripted one (`FakeUpstream.script`), else the
server's. A named mode then overrides it, picked by the header `x-fake-mode`, the body field
`fake_mode` or a word `fake_mode=MODE` in the prompt; delays likewise by the headers
`x-fake-first-token-delay` / `x-fake-chunk-delay` or the body fields `fake_first_token_delay_s` /
`fake_chunk_delay_s` (seconds).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fake_upstream.content import DEFAULT_MAX_TOKENS, prompt_text

FAULTS = (
    "drop",  # the connection is aborted mid-stream (the chunked body never ends)
    "stall",  # the stream goes silent for `stall_s`, then goes on
    "malformed",  # a `data:` line that is not JSON, then [DONE]
    "not_object",  # a `data:` line holding JSON that is not an object, then [DONE]
    "stream_error",  # an in-stream `data: {"error": {...}}` event, then [DONE]
)
STREAM_ERROR_MESSAGE = "fake engine failure"


@dataclass(frozen=True, slots=True)
class FakeBehavior:
    """One answer's script. Times are seconds."""

    chunks: int | None = None  # text events of a streamed answer; None: the request's max_tokens (16 without)
    delay_s: float = 0.0  # before the response headers
    first_token_delay_s: float = 0.0  # after the headers, before the first event
    chunk_interval_s: float = 0.0  # between two events
    text_bytes: int = 0  # pad each token's text to at least this many bytes
    status: int = 200  # non-200: an error body instead of an answer
    error_text: str | None = None  # with a non-200 status: this plain text instead of vLLM's JSON error
    fault: str | None = None  # one of FAULTS, after `fault_after` text events
    fault_after: int = 2
    stall_s: float = 30.0
    send_done: bool = True  # end the stream with data: [DONE]
    timing_comment: bool = False  # a `: proxy-timing {json}` comment before [DONE] (as the proxy sends)
    split_events: bool = False  # write each event in two pieces cut mid-line, 1 ms apart
    coalesce_pairs: bool = False  # write events two at a time (one TCP write holds two events)
    fragment_bytes: int | None = None  # write the whole stream in pieces this small (events cut anywhere)
    kv_transfer_params: dict[str, Any] | None = None  # added to non-streamed answers (NIXL prefill)
    answer_fields: dict[str, Any] | None = None  # any other top-level fields of non-streamed answers
    health_status: int = 200
    health_delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; choose one of {', '.join(FAULTS)}")

    def n_out(self, body: dict[str, Any]) -> int:
        """Tokens in the answer to `body`."""
        if self.chunks is not None:
            return self.chunks
        max_tokens = body.get("max_tokens")
        return max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS


# Named modes: overrides of the behaviour, selectable per request.
MODES: dict[str, dict[str, Any]] = {
    "ok": {},
    "http400": {"status": 400},
    "http500": {"status": 500},
    "drop": {"fault": "drop"},
    "stall": {"fault": "stall"},
    "malformed": {"fault": "malformed"},
    "not_object": {"fault": "not_object"},
    "stream_error": {"fault": "stream_error"},
    "no_done": {"send_done": False},
    "timing": {"timing_comment": True},
    "empty": {"chunks": 0},
    "split": {"split_events": True},
}
_MODE_IN_PROMPT = re.compile(r"\bfake_mode=(\w+)")


def with_mode(behavior: FakeBehavior, mode: str) -> FakeBehavior:
    """`behavior` with the named mode's overrides; ValueError for an unknown mode."""
    try:
        overrides = MODES[mode]
    except KeyError:
        raise ValueError(f"unknown fake mode {mode!r}; choose one of {', '.join(MODES)}") from None
    return dataclasses.replace(behavior, **overrides) if overrides else behavior


def for_request(behavior: FakeBehavior, headers: Mapping[str, str], body: dict[str, Any]) -> FakeBehavior:
    """The behaviour for one request: `behavior` with the request's mode and delay overrides."""
    found = _MODE_IN_PROMPT.search(prompt_text(body))
    mode = headers.get("x-fake-mode") or body.get("fake_mode") or (found and found.group(1))
    if mode:
        behavior = with_mode(behavior, str(mode))
    first = headers.get("x-fake-first-token-delay", body.get("fake_first_token_delay_s"))
    chunk = headers.get("x-fake-chunk-delay", body.get("fake_chunk_delay_s"))
    changes: dict[str, float] = {}
    if first is not None:
        changes["first_token_delay_s"] = float(first)
    if chunk is not None:
        changes["chunk_interval_s"] = float(chunk)
    return dataclasses.replace(behavior, **changes) if changes else behavior

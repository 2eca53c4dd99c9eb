"""Per-request stage timing, reported in a header, an SSE comment and the stage log."""

from __future__ import annotations

import time
from typing import Any

import orjson

from sse import TIMING_COMMENT_PREFIX

TIMING_HEADER = "x-proxy-timing"

_STAGES = ("recv", "prefill_start", "prefill_end", "decode_send", "decode_first_chunk", "decode_end")


def _ms(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) / 1e6, 3)


class StageTiming:
    """Monotonic-ns stamps of one request's stages plus what it was routed to.

    Stamps: recv (proxy got the request), prefill_start/prefill_end (prefill leg sent / its body read),
    decode_send (decode request about to be sent), decode_first_chunk (first SSE event read; response
    headers for non-streaming), decode_end (`data: [DONE]` read, upstream EOF, or body read).
    `chunks` counts the upstream SSE events forwarded before `data: [DONE]`; `retries` the legs sent again
    to another instance after a backend fault (at most one per request). `path` is the one the policy
    chose (`split`: prefill leg then decode leg; `local`: the decode instance alone), `prompt_tokens_counted`
    the proxy's count of the prompt when the policy read it (proxy/policy.py).
    """

    __slots__ = (
        "chunks",
        "connector",
        "decode_end",
        "decode_first_chunk",
        "decode_send",
        "decode_url",
        "endpoint",
        "error",
        "path",
        "policy",
        "prefill_end",
        "prefill_start",
        "prefill_url",
        "prompt_tokens_counted",
        "recv",
        "recv_epoch_ns",
        "request_id",
        "retries",
        "status",
        "stream",
    )

    def __init__(self, connector: str, endpoint: str) -> None:
        self.recv: int = time.monotonic_ns()
        self.recv_epoch_ns: int = time.time_ns()
        self.connector = connector
        self.endpoint = endpoint
        self.stream = False
        self.request_id: str | None = None
        self.prefill_url: str | None = None
        self.decode_url: str | None = None
        self.prefill_start: int | None = None
        self.prefill_end: int | None = None
        self.decode_send: int | None = None
        self.decode_first_chunk: int | None = None
        self.decode_end: int | None = None
        self.status: int | None = None
        self.error: str | None = None
        self.chunks = 0
        self.retries = 0
        self.policy: str | None = None
        self.path: str | None = None
        self.prompt_tokens_counted: int | None = None

    @property
    def prefill_ms(self) -> float | None:
        return _ms(self.prefill_start, self.prefill_end)

    @property
    def decode_first_chunk_ms(self) -> float | None:
        return _ms(self.decode_send, self.decode_first_chunk)

    @property
    def decode_total_ms(self) -> float | None:
        return _ms(self.decode_send, self.decode_end)

    @property
    def proxy_overhead_ms(self) -> float | None:
        """recv -> prefill send + prefill end -> decode send (recv -> decode send without a prefill leg)."""
        if self.decode_send is None:
            return None
        if self.prefill_start is None or self.prefill_end is None:
            return _ms(self.recv, self.decode_send)
        return round(((self.prefill_start - self.recv) + (self.decode_send - self.prefill_end)) / 1e6, 3)

    def record(self) -> dict[str, Any]:
        """The timing as a flat JSON-ready dict (monotonic and epoch ns for every stamp)."""
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "connector": self.connector,
            "endpoint": self.endpoint,
            "stream": self.stream,
            "policy": self.policy,
            "path": self.path,
            "prompt_tokens_counted": self.prompt_tokens_counted,
            "prefill_url": self.prefill_url,
            "decode_url": self.decode_url,
            "status": self.status,
            "error": self.error,
            "chunks": self.chunks,
            "retries": self.retries,
            "prefill_ms": self.prefill_ms,
            "decode_first_chunk_ms": self.decode_first_chunk_ms,
            "decode_total_ms": self.decode_total_ms,
            "proxy_overhead_ms": self.proxy_overhead_ms,
        }
        offset = self.recv_epoch_ns - self.recv
        for stage in _STAGES:
            mono = getattr(self, stage)
            out[f"t_{stage}_mono_ns"] = mono
            out[f"t_{stage}_epoch_ns"] = None if mono is None else mono + offset
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.record())

    def sse_comment(self) -> bytes:
        """`: proxy-timing {json}\\n\\n` (an SSE comment: clients that don't know it skip it)."""
        return TIMING_COMMENT_PREFIX + self.to_json() + b"\n\n"


def parse_timing_comment(event: bytes) -> dict[str, Any]:
    """Inverse of `StageTiming.sse_comment` (for clients and tests)."""
    if not event.startswith(TIMING_COMMENT_PREFIX):
        raise ValueError("not a proxy-timing comment")
    return orjson.loads(event[len(TIMING_COMMENT_PREFIX) :].strip())


class StageLog:
    """Append-only JSONL of timing records, flushed after every line."""

    def __init__(self, path: str | Any) -> None:
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for the app's lifetime

    def write(self, timing: StageTiming) -> None:
        if self._file.closed:  # a stream dropped after shutdown
            return
        self._file.write(timing.to_json() + b"\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

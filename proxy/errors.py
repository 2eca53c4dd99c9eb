"""OpenAI-style error bodies and the proxy's error types."""

from __future__ import annotations

from typing import Any

import orjson

_TYPES = {400: "invalid_request_error", 502: "upstream_error", 503: "service_unavailable"}


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """`{"error": {"message", "type", "code", ...extra}}` with code = HTTP status."""
    err: dict[str, Any] = {"message": message, "type": _TYPES.get(status, "proxy_error"), "code": status}
    err.update({k: v for k, v in extra.items() if v is not None})
    return {"error": err}


def sse_error_event(status: int, message: str, **extra: Any) -> bytes:
    """`data: {"error": {...}}\\n\\n` for failures after the stream has started."""
    return b"data: " + orjson.dumps(error_body(status, message, **extra)) + b"\n\n"


class ProxyError(Exception):
    """A request failure with its HTTP status, the leg it happened on and the instance involved."""

    def __init__(self, status: int, message: str, leg: str, instance: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.leg = leg  # "request" | "prefill" | "decode"
        self.instance = instance

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, leg=self.leg, instance=self.instance)

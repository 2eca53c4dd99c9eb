"""OpenAI-style error bodies and the proxy's error types."""

from __future__ import annotations

from typing import Any

import orjson

_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_SNIPPET_CHARS = 300
LEG_HEADER = b"x-proxy-error-leg"
INSTANCE_HEADER = b"x-proxy-error-instance"


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """`{"error": {"message", "type", "code", ...extra}}` with code = HTTP status."""
    err: dict[str, Any] = {"message": message, "type": _TYPES.get(status, "proxy_error"), "code": status}
    err.update({k: v for k, v in extra.items() if v is not None})
    return {"error": err}


def upstream_message(data: bytes) -> str:
    """The upstream's error message (OpenAI/vLLM JSON error or text), shortened."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed.get("message", parsed.get("detail")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:_SNIPPET_CHARS]
    return data[:_SNIPPET_CHARS].decode("utf-8", "replace").strip()


def error_json(status: int, message: str, **extra: Any) -> bytes:
    return orjson.dumps(error_body(status, message, **extra))


def sse_error_event(status: int, message: str, **extra: Any) -> bytes:
    """`data: {"error": {...}}\\n\\n` for failures after the stream has started."""
    return b"data: " + error_json(status, message, **extra) + b"\n\n"


class ProxyError(Exception):
    """A request failure with its HTTP status, the leg it happened on and the instance involved.

    `fault` is set when the backend or the network failed (not the client, not an HTTP answer): one of
    "unreachable", "connect_timeout", "timeout", "disconnected". Such a failure takes the instance out
    of rotation and, before any byte went to the client, the request is retried on another instance.
    """

    def __init__(
        self, status: int, message: str, leg: str, instance: str | None = None, fault: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.leg = leg  # "request" | "client" | "prefill" | "decode"
        self.instance = instance
        self.fault = fault

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, leg=self.leg, instance=self.instance)

    def payload(self) -> tuple[bytes, bytes]:
        """(content type, body bytes) of the error response."""
        return b"application/json", orjson.dumps(self.body())


class UpstreamClientError(ProxyError):
    """A backend answered 4xx: the client's request was wrong, so its status and body go back as they are.

    When the body is an OpenAI/vLLM error object (`{"error": {...}}`), `leg` and `instance` are added to
    it (unless present); any other body is passed on byte for byte. The response headers name the leg
    and instance either way.
    """

    def __init__(self, status: int, leg: str, instance: str, data: bytes, content_type: str | None) -> None:
        message = f"{leg} leg to {instance}: HTTP {status}: {upstream_message(data)}"
        super().__init__(status, message, leg, instance)
        self.data = data
        self.content_type = content_type or "application/json"

    def payload(self) -> tuple[bytes, bytes]:
        try:
            parsed = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = parsed["error"]
            err.setdefault("leg", self.leg)
            err.setdefault("instance", self.instance)
            return b"application/json", orjson.dumps(parsed)
        return self.content_type.encode("latin-1"), self.data

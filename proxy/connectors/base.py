"""The connector strategy: how one client request becomes a prefill leg and a decode leg."""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar

from proxy.instances import Instance


class ConnectorProtocolError(RuntimeError):
    """The prefill leg answered, but not with what this connector needs for the decode leg."""


def prefill_only(body: dict[str, Any]) -> dict[str, Any]:
    """The prefill leg's body: one output token, not streamed.

    `max_tokens` (and `max_completion_tokens`, which chat prefers when present) become 1; `stream` false;
    `stream_options` dropped (vLLM rejects it without streaming); `min_tokens`/`min_completion_tokens`
    dropped (they would exceed the one-token budget).
    """
    leg = dict(body)
    leg["max_tokens"] = 1
    if "max_completion_tokens" in leg:
        leg["max_completion_tokens"] = 1
    leg["stream"] = False
    for key in ("stream_options", "min_tokens", "min_completion_tokens"):
        leg.pop(key, None)
    return leg


class Connector(ABC):
    """Base strategy. Subclasses override the hooks that differ for their KV connector.

    - `request_id`: the X-Request-Id sent on both legs (`suffix` is the client's id or a fresh uuid hex).
    - `prefill_body`: the prefill leg's body from the parsed client body.
    - `decode_body`: the decode leg's bytes: the client's raw bytes unless the connector adds fields.
    """

    name: ClassVar[str]
    splits: ClassVar[bool] = True  # False: no prefill leg (passthrough)
    needs_kv_address: ClassVar[bool] = False  # instances must carry a KV/ZMQ address
    reads_prefill_response: ClassVar[bool] = False  # decode_body needs the parsed prefill JSON
    # The prefill leg sends the KV to the decode instance chosen with it: retrying decode elsewhere
    # means redoing the prefill.
    prefill_pushes_to_decode: ClassVar[bool] = False

    def request_id(self, prefill: Instance | None, decode: Instance, suffix: str) -> str:
        return suffix

    def prefill_body(self, body: dict[str, Any]) -> dict[str, Any]:
        return prefill_only(body)

    def decode_body(self, raw: bytes, body: dict[str, Any], prefill_response: dict[str, Any] | None) -> bytes:
        return raw

"""NixlConnector (vLLM >= 0.24): KV handle round trip through `kv_transfer_params`.

The prefill leg asks vLLM to keep the KV for a remote decoder; its response carries the handle
(engine id, block ids, host, port) in `kv_transfer_params`, which the decode leg sends back so the
decoder pulls the blocks over NIXL instead of recomputing the prompt.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.connectors.base import Connector, ConnectorProtocolError, prefill_only

PREFILL_KV_TRANSFER_PARAMS: dict[str, Any] = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


class NixlConnector(Connector):
    name = "nixl"
    reads_prefill_response = True

    def prefill_body(self, body: dict[str, Any]) -> dict[str, Any]:
        leg = prefill_only(body)
        leg["kv_transfer_params"] = dict(PREFILL_KV_TRANSFER_PARAMS)
        return leg

    def decode_body(self, raw: bytes, body: dict[str, Any], prefill_response: dict[str, Any] | None) -> bytes:
        params = (prefill_response or {}).get("kv_transfer_params")
        if not params:
            # Without the handle the decoder would silently recompute the prompt: fail loudly instead.
            raise ConnectorProtocolError(
                "response has no kv_transfer_params; is the prefill instance running NixlConnector "
                "with kv_role kv_producer or kv_both?"
            )
        if not isinstance(params, dict):
            raise ConnectorProtocolError(
                f"kv_transfer_params is a {type(params).__name__}, not an object; the prefill instance "
                "does not speak NixlConnector's protocol"
            )
        return orjson.dumps({**body, "kv_transfer_params": params})

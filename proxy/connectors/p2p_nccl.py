"""P2pNcclConnector (vLLM <= 0.23): the KV peers are named inside the request id.

The id is `___prefill_addr_<P kv host:port>___decode_addr_<D kv host:port>_<suffix>`, sent as the
X-Request-Id header on both legs. vLLM prefixes it (`cmpl-`, `chatcmpl-`) and may append `-0` or a random
tail; each side finds its peer with `re.search` of the patterns below (copied from vLLM 0.23
`P2pNcclConnector.parse_request_id`): the prefill instance looks for the decode address, the decode
instance for the prefill address. The addresses are the instances' ZMQ (kv_port) endpoints.
"""

from __future__ import annotations

import re

from proxy.connectors.base import Connector
from proxy.instances import Instance

# What the prefill (producer) side searches to find the decode peer, and vice versa.
DECODE_ADDR_PATTERN = re.compile(r"___decode_addr_(.*):(\d+)")
PREFILL_ADDR_PATTERN = re.compile(r"___prefill_addr_(.*):(\d+)___")

# A suffix never moves either match: no ":" (the decode regex is greedy up to the last ":digits"),
# no "___" and no leading "_" (the prefill regex is greedy up to the last ":digits___").
SUFFIX_PATTERN = re.compile(r"^[A-Za-z0-9.\-][A-Za-z0-9._\-]{0,127}$")


def check_suffix(suffix: str) -> str:
    """Raise ValueError when `suffix` could make vLLM's regexes parse the wrong address."""
    if not SUFFIX_PATTERN.match(suffix) or "___" in suffix:
        raise ValueError(
            f"request id {suffix!r} is not usable: use 1-128 of [A-Za-z0-9._-], not starting with '_', "
            "without '___'"
        )
    return suffix


def build_request_id(prefill_kv: str, decode_kv: str, suffix: str) -> str:
    """The P2P request id naming both KV peers (addresses as `host:port`)."""
    return f"___prefill_addr_{prefill_kv}___decode_addr_{decode_kv}_{suffix}"


def parse_request_id(request_id: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """((prefill host, port), (decode host, port)) the way vLLM's two sides read them."""
    prefill = PREFILL_ADDR_PATTERN.search(request_id)
    decode = DECODE_ADDR_PATTERN.search(request_id)
    if prefill is None or decode is None:
        raise ValueError(f"request id {request_id!r} does not name both KV peers")
    return (prefill.group(1), int(prefill.group(2))), (decode.group(1), int(decode.group(2)))


class P2pNcclConnector(Connector):
    name = "p2p_nccl"
    needs_kv_address = True
    prefill_pushes_to_decode = True

    def request_id(self, prefill: Instance | None, decode: Instance, suffix: str) -> str:
        if prefill is None or prefill.kv_address is None or decode.kv_address is None:
            raise ValueError("p2p_nccl needs the KV address of both instances")
        return build_request_id(prefill.kv_address, decode.kv_address, suffix)

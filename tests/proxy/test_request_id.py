"""P2P request ids round-trip through the exact regexes of vLLM 0.23's P2pNcclConnector.parse_request_id."""

from __future__ import annotations

import re
import uuid

import pytest

from proxy.connectors.p2p_nccl import build_request_id, check_suffix, parse_request_id

# Copied from vLLM 0.23 vllm/distributed/kv_transfer/kv_connector/v1/p2p/p2p_nccl_connector.py
# (parse_request_id): is_prefill=True searches the first, is_prefill=False the second.
VLLM_PREFILL_SIDE_PATTERN = r"___decode_addr_(.*):(\d+)"
VLLM_DECODE_SIDE_PATTERN = r"___prefill_addr_(.*):(\d+)___"


def vllm_parse(request_id: str, is_prefill: bool) -> tuple[str, int]:
    """vLLM's own logic, verbatim in behaviour."""
    pattern = VLLM_PREFILL_SIDE_PATTERN if is_prefill else VLLM_DECODE_SIDE_PATTERN
    match = re.search(pattern, request_id)
    if match is None:
        raise ValueError(f"Request id {request_id} does not contain hostname and port")
    return match.group(1), int(match.group(2))


ADDRESSES = [
    ("127.0.0.1:21001", "127.0.0.1:22001"),
    ("10.0.0.1:1", "10.0.0.2:65535"),
    ("node-a.cluster.local:30001", "node-b:30002"),
    ("[fe80::1]:21001", "[fe80::2]:22001"),
]
SUFFIXES = [uuid.uuid4().hex, "g3-p000", "7-1", "a_b", "run.1-req_17", "x" * 128, "0"]


@pytest.mark.parametrize(("prefill_kv", "decode_kv"), ADDRESSES)
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("vllm_wrapping", ["{}", "cmpl-{}-0", "chatcmpl-{}", "cmpl-{}-0-1a2b3c4d"])
def test_both_sides_parse_their_peer(
    prefill_kv: str, decode_kv: str, suffix: str, vllm_wrapping: str
) -> None:
    request_id = build_request_id(prefill_kv, decode_kv, check_suffix(suffix))
    engine_id = vllm_wrapping.format(request_id)  # what vLLM makes of the X-Request-Id header
    p_host, p_port = prefill_kv.rsplit(":", 1)
    d_host, d_port = decode_kv.rsplit(":", 1)
    assert vllm_parse(engine_id, is_prefill=True) == (d_host, int(d_port))
    assert vllm_parse(engine_id, is_prefill=False) == (p_host, int(p_port))
    assert parse_request_id(engine_id) == ((p_host, int(p_port)), (d_host, int(d_port)))


def test_format_is_the_one_vllm_xpyd_proxy_sends() -> None:
    assert (
        build_request_id("1.2.3.4:21001", "5.6.7.8:22001", "abc")
        == "___prefill_addr_1.2.3.4:21001___decode_addr_5.6.7.8:22001_abc"
    )


@pytest.mark.parametrize("suffix", ["g3:p000", "_g3", "a___b", "", "x" * 129, "has space", "ü"])
def test_suffixes_that_could_move_a_match_are_rejected(suffix: str) -> None:
    with pytest.raises(ValueError, match="not usable"):
        check_suffix(suffix)


def test_rejected_suffixes_really_would_break_parsing() -> None:
    # The reason for the rules above: these ids make vLLM read a wrong peer address.
    bad_colon = build_request_id("127.0.0.1:21001", "127.0.0.1:22001", "x:9")
    assert vllm_parse(bad_colon, is_prefill=True) != ("127.0.0.1", 22001)
    bad_underscore = build_request_id("127.0.0.1:21001", "127.0.0.1:22001", "__x")
    assert vllm_parse(bad_underscore, is_prefill=False) != ("127.0.0.1", 21001)


def test_parse_rejects_ids_without_addresses() -> None:
    with pytest.raises(ValueError, match="does not name both"):
        parse_request_id("cmpl-1234-0")

"""Each connector's legs, checked on what the fake upstreams actually received over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import re

import orjson
import pytest

from fake_upstream import FakeBehavior
from proxy.connectors.nixl import PREFILL_KV_TRANSFER_PARAMS
from tests.proxy.harness import chat_body, completion_body, decode_kv, prefill_kv, proxy_with, run
from tests.waiting import wait_for_async

VLLM_PREFILL_SIDE_PATTERN = r"___decode_addr_(.*):(\d+)"
VLLM_DECODE_SIDE_PATTERN = r"___prefill_addr_(.*):(\d+)___"

KV_HANDLE = {
    "do_remote_prefill": True,
    "do_remote_decode": False,
    "remote_engine_id": "engine-7",
    "remote_block_ids": [3, 4, 5],
    "remote_host": "127.0.0.1",
    "remote_port": 5600,
    "tp_size": 1,
}


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("stream", [True, False])
def test_nixl_forwards_the_prefill_kv_transfer_params_to_decode(path: str, stream: bool) -> None:
    async def scenario() -> None:
        async with proxy_with("nixl", prefill=[FakeBehavior(kv_transfer_params=KV_HANDLE)]) as h:
            make = chat_body if "chat" in path else completion_body
            body = make(
                stream=stream, stream_options={"include_usage": True} if stream else None, min_tokens=2
            )
            if not stream:
                body.pop("stream_options")
            status, _, _ = await h.post(path, body)
            assert status == 200
            (p_req,) = h.prefill[0].received
            (d_req,) = h.decode[0].received
            assert p_req.path == d_req.path == path
            assert p_req.body["kv_transfer_params"] == PREFILL_KV_TRANSFER_PARAMS
            assert p_req.body["max_tokens"] == 1 and p_req.body["stream"] is False
            assert "stream_options" not in p_req.body and "min_tokens" not in p_req.body
            assert d_req.body == {**body, "kv_transfer_params": KV_HANDLE}
            assert p_req.headers["x-request-id"] == d_req.headers["x-request-id"]

    run(scenario())


def test_nixl_prefill_leg_asks_for_remote_decode_in_vllms_terms() -> None:
    async def scenario() -> None:
        async with proxy_with("nixl", prefill=[FakeBehavior(kv_transfer_params=KV_HANDLE)]) as h:
            body = completion_body(max_tokens=50, kv_transfer_params={"do_remote_decode": False, "x": 1})
            status, _, _ = await h.post("/v1/completions", body)
            assert status == 200
            (p_req,) = h.prefill[0].received
            # literal values, not the proxy's own constant: what vLLM's NixlConnector reads
            assert p_req.body["kv_transfer_params"] == {
                "do_remote_decode": True,
                "do_remote_prefill": False,
                "remote_engine_id": None,
                "remote_block_ids": None,
                "remote_host": None,
                "remote_port": None,
            }
            assert p_req.body["max_tokens"] == 1 and p_req.body["stream"] is False
            # the client's own kv_transfer_params never reach decode: prefill's handle replaces them
            (d_req,) = h.decode[0].received
            assert d_req.body["kv_transfer_params"] == KV_HANDLE and d_req.body["max_tokens"] == 50

    run(scenario())


def test_nixl_handle_reaches_decode_unchanged_to_the_byte() -> None:
    odd = {
        "remote_engine_id": "engine-ü-7",
        "remote_block_ids": [[0, 1], [2, 3]],
        "remote_host": "10.0.0.2",
        "remote_port": 5601,
        "tp_size": 2,
        "nested": {"z": 1, "a": [1.5, None, True]},
        "do_remote_prefill": True,
    }

    async def scenario() -> None:
        async with proxy_with("nixl", prefill=[FakeBehavior(kv_transfer_params=odd)]) as h:
            status, _, _ = await h.post("/v1/completions", completion_body())
            assert status == 200
            (d_req,) = h.decode[0].received
            assert list(d_req.body["kv_transfer_params"].items()) == list(odd.items())  # order kept too
            assert b'"kv_transfer_params":' + orjson.dumps(odd) in d_req.raw

    run(scenario())


@pytest.mark.parametrize(
    ("answer_fields", "reason"),
    [
        (None, "response has no kv_transfer_params"),
        ({"kv_transfer_params": None}, "response has no kv_transfer_params"),
        ({"kv_transfer_params": {}}, "response has no kv_transfer_params"),
        ({"kv_transfer_params": "handle"}, "kv_transfer_params is a str, not an object"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_nixl_without_kv_transfer_params_is_a_502_naming_prefill_not_a_silent_recompute(
    answer_fields: dict | None, reason: str, stream: bool
) -> None:
    async def scenario() -> None:
        async with proxy_with("nixl", prefill=[FakeBehavior(answer_fields=answer_fields)]) as h:
            status, headers, raw = await h.post("/v1/completions", completion_body(stream=stream))
            err = orjson.loads(raw)["error"]
            prefill = h.prefill[0].url
            assert status == 502 and err["type"] == "upstream_error"
            assert err["message"].startswith(f"prefill leg to {prefill}: {reason}")
            assert err["leg"] == "prefill" and err["instance"] == prefill
            assert headers["x-proxy-error-instance"] == prefill
            assert h.decode[0].received == []
            _, instances = await h.get_json("/instances")
            assert instances["prefill"][0]["in_rotation"] is True  # a protocol mismatch, not a fault

    run(scenario())


def test_p2p_nccl_request_id_names_both_kv_peers_on_both_legs() -> None:
    async def scenario() -> None:
        async with proxy_with("p2p_nccl", prefill=[FakeBehavior()] * 2, decode=[FakeBehavior()] * 2) as h:
            for i in range(4):
                status, headers, _ = await h.post(
                    "/v1/completions", completion_body(), {"X-Request-Id": f"req-{i}"}
                )
                assert status == 200
            for pi, p in enumerate(h.prefill):
                for req in p.received:
                    rid = req.headers["x-request-id"]
                    d_host, d_port = re.search(VLLM_PREFILL_SIDE_PATTERN, rid).groups()  # type: ignore[union-attr]
                    p_host, p_port = re.search(VLLM_DECODE_SIDE_PATTERN, rid).groups()  # type: ignore[union-attr]
                    assert f"{p_host}:{p_port}" == prefill_kv(pi)
                    assert f"{d_host}:{d_port}" in (decode_kv(0), decode_kv(1))
            # the decode instance that got a request is the one its id names
            for di, d in enumerate(h.decode):
                for req in d.received:
                    d_host, d_port = re.search(
                        VLLM_PREFILL_SIDE_PATTERN, req.headers["x-request-id"]
                    ).groups()  # type: ignore[union-attr]
                    assert f"{d_host}:{d_port}" == decode_kv(di)
            prefill_ids = {r.headers["x-request-id"] for p in h.prefill for r in p.received}
            decode_ids = {r.headers["x-request-id"] for d in h.decode for r in d.received}
            assert prefill_ids == decode_ids
            assert {rid.rsplit("_", 1)[1] for rid in decode_ids} == {f"req-{i}" for i in range(4)}
            assert headers["x-request-id"] in decode_ids

    run(scenario())


def test_example_connector_is_a_plain_split_with_the_original_body_on_decode() -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            raw = b'{"prompt": "t1 t2",   "model": "fake-model", "max_tokens": 3, "max_completion_tokens": 3}'
            status, headers, _ = await h.post("/v1/completions", raw)
            assert status == 200
            (p_req,) = h.prefill[0].received
            (d_req,) = h.decode[0].received
            assert p_req.body == {
                "prompt": "t1 t2",
                "model": "fake-model",
                "max_tokens": 1,
                "max_completion_tokens": 1,
                "stream": False,
            }
            assert d_req.body == orjson.loads(raw)
            assert "kv_transfer_params" not in p_req.body
            assert p_req.headers["x-request-id"] == d_req.headers["x-request-id"] == headers["x-request-id"]

    run(scenario())


def test_client_authorization_reaches_both_legs() -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            await h.post("/v1/completions", completion_body(stream=False), {"Authorization": "Bearer k"})
            assert h.prefill[0].received[0].headers["authorization"] == "Bearer k"
            assert h.decode[0].received[0].headers["authorization"] == "Bearer k"

    run(scenario())


def test_passthrough_round_robin_without_a_prefill_leg() -> None:
    async def scenario() -> None:
        async with proxy_with("passthrough", prefill=[], decode=[FakeBehavior()] * 3) as h:
            for _ in range(6):
                status, _, _ = await h.post("/v1/completions", completion_body(stream=False, max_tokens=9))
                assert status == 200
            assert [len(b.received) for b in h.decode] == [2, 2, 2]
            assert all(r.body["max_tokens"] == 9 for b in h.decode for r in b.received)

    run(scenario())


def test_passthrough_least_outstanding_avoids_the_busy_backend() -> None:
    async def scenario() -> None:
        # The long stream goes silent after 2 chunks until the test ends: outstanding however slowly the
        # three short requests run (a 1 s stream could finish first on busy cores).
        slow = FakeBehavior(chunks=50, fault="stall", fault_after=2, stall_s=60)
        async with proxy_with(
            "passthrough", prefill=[], decode=[slow, FakeBehavior()], decode_select="least_outstanding"
        ) as h:
            busy = asyncio.create_task(h.stream("/v1/completions", completion_body()))
            await wait_for_async(lambda: h.decode[0].received, "the long stream to reach backend 0")
            for _ in range(3):
                status, _, _ = await h.post("/v1/completions", completion_body(stream=False))
                assert status == 200
            assert len(h.decode[0].received) == 1 and len(h.decode[1].received) == 3
            assert not busy.done()
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await busy

    run(scenario())

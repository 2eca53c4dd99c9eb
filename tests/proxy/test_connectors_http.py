"""Each connector's legs, checked on what the fake upstreams actually received over HTTP."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest

from fake_upstream import FakeBehavior
from proxy.connectors.nixl import PREFILL_KV_TRANSFER_PARAMS
from tests.proxy.harness import chat_body, completion_body, decode_kv, prefill_kv, proxy_with, run

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


def test_nixl_without_kv_transfer_params_is_a_502_not_a_silent_recompute() -> None:
    async def scenario() -> None:
        async with proxy_with("nixl") as h:
            status, _, raw = await h.post("/v1/completions", completion_body())
            err = orjson.loads(raw)["error"]
            assert status == 502
            assert err["message"].startswith(
                f"prefill leg to {h.prefill[0].url}: response has no kv_transfer_params"
            )
            assert h.decode[0].received == []

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
        slow = FakeBehavior(chunks=50, chunk_interval_s=0.02)
        async with proxy_with(
            "passthrough", prefill=[], decode=[slow, FakeBehavior()], decode_select="least_outstanding"
        ) as h:
            busy = asyncio.create_task(h.stream("/v1/completions", completion_body()))
            while not h.decode[0].received:  # the long stream is on backend 0
                await asyncio.sleep(0.01)
            for _ in range(3):
                status, _, _ = await h.post("/v1/completions", completion_body(stream=False))
                assert status == 200
            assert len(h.decode[0].received) == 1 and len(h.decode[1].received) == 3
            status, _ = await busy
            assert status == 200

    run(scenario())

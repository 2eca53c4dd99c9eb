"""ZMQ registration (vLLM P2pNcclEngine heartbeats) makes instances usable; they expire without heartbeats."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgpack
import pytest
import zmq

from fake_upstream import FakeUpstream
from proxy.app import create_app
from proxy.config import ProxyConfig
from proxy.connectors.p2p_nccl import parse_request_id
from proxy.discovery import parse_registration
from proxy.server import running_app
from tests.proxy.harness import completion_body, run
from tests.waiting import wait_for_async


def send_registrations(port: int, messages: list[dict[str, Any]]) -> None:
    """What vLLM's ping thread does: a DEALER sends msgpack maps to the proxy's ROUTER."""
    ctx = zmq.Context()
    try:
        for message in messages:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 2000)
            sock.setsockopt_string(zmq.IDENTITY, message.get("zmq_address", "x"))
            sock.connect(f"tcp://127.0.0.1:{port}")
            sock.send(msgpack.dumps(message))
            sock.close()
    finally:
        ctx.term()  # waits (LINGER) until the messages are delivered


def test_registered_p_and_d_serve_a_p2p_request_then_expire() -> None:
    async def scenario() -> None:
        p, d = FakeUpstream(), FakeUpstream()
        await p.start()
        await d.start()
        cfg = ProxyConfig(connector="p2p_nccl", discovery_port=0, discovery_ttl_s=1.0)
        app = create_app(cfg)
        try:
            async with running_app(app) as url, aiohttp.ClientSession() as session:
                state = app.extensions["proxy"]
                assert state.discovery is not None

                async def listed() -> dict[str, Any]:
                    async with session.get(url + "/instances") as resp:
                        return await resp.json()

                # nothing registered yet: generation is refused with a clear 503, health is unhealthy
                async with session.post(url + "/v1/completions", json=completion_body()) as resp:
                    assert resp.status == 503
                    assert "no prefill instance" in (await resp.json())["error"]["message"]
                async with session.get(url + "/health") as resp:
                    assert resp.status == 503

                messages = [
                    {
                        "type": "P",
                        "http_address": p.url.removeprefix("http://"),
                        "zmq_address": "127.0.0.1:21001",
                    },
                    {
                        "type": "register",
                        "role": "D",
                        "http_address": d.url.removeprefix("http://"),
                        "zmq_address": "127.0.0.1:22001",
                    },
                    {"type": "X", "http_address": "127.0.0.1:1", "zmq_address": "127.0.0.1:2"},  # ignored
                    {"type": "P"},  # malformed: ignored, the listener keeps going
                ]
                await asyncio.to_thread(send_registrations, state.discovery.port, messages)

                async def both_listed() -> bool:
                    body = await listed()
                    return len(body["prefill"]) == 1 and len(body["decode"]) == 1

                await wait_for_async(both_listed, "P and D to be listed")
                body = await listed()
                assert (
                    body["prefill"][0]["url"] == p.url
                    and body["prefill"][0]["kv_address"] == "127.0.0.1:21001"
                )
                assert body["decode"][0]["url"] == d.url and body["decode"][0]["source"] == "discovery"

                async with session.post(url + "/v1/completions", json=completion_body()) as resp:
                    assert resp.status == 200
                    await resp.read()
                rid = d.received[0].headers["x-request-id"]
                assert p.received[0].headers["x-request-id"] == rid
                assert parse_request_id(rid) == (("127.0.0.1", 21001), ("127.0.0.1", 22001))

                async def none_listed() -> bool:
                    body = await listed()
                    return not body["prefill"] and not body["decode"]

                await wait_for_async(none_listed, "registrations to expire after the TTL")
        finally:
            await p.stop()
            await d.stop()

    run(scenario())


@pytest.mark.parametrize(
    "message",
    [
        ["P", "127.0.0.1:1", "127.0.0.1:2"],
        {"type": "Q", "http_address": "127.0.0.1:1", "zmq_address": "127.0.0.1:2"},
        {"type": "P", "http_address": "127.0.0.1:1"},
        {"type": "P", "http_address": "127.0.0.1:1", "zmq_address": "nohost"},
    ],
)
def test_malformed_registrations_are_rejected(message: Any) -> None:
    with pytest.raises(ValueError):
        parse_registration(message)


def test_vllm_heartbeat_format_parses() -> None:
    message = {"type": "D", "http_address": "10.0.0.2:8200", "zmq_address": "10.0.0.2:22001"}
    assert parse_registration(message) == ("D", "http://10.0.0.2:8200", "10.0.0.2:22001")

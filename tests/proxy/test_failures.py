"""Failure behaviour, each against the running proxy over HTTP with fake upstreams."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from fake_upstream import FakeBehavior
from proxy.timing import parse_timing_comment
from tests.conftest import free_port
from tests.proxy.harness import (
    SPLITTING_POLICIES,
    completion_body,
    metric,
    proxy_with,
    run,
    under_policy,
)
from tests.waiting import wait_for_async


@pytest.fixture(autouse=True, params=SPLITTING_POLICIES)
def policy(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs under each policy that splits its requests (tests/proxy/harness.py)."""
    with under_policy(request.param):
        yield request.param


def error_of(raw: bytes) -> dict:
    body = orjson.loads(raw)
    assert set(body) >= {"error"}
    err = body["error"]
    assert {"message", "type", "code"} <= set(err)
    return err


@pytest.mark.parametrize(
    ("path", "raw", "headers", "message"),
    [
        ("/v1/completions", b"{not json", {}, "request body is not valid JSON"),
        ("/v1/completions", b"[1, 2]", {}, "must be a JSON object"),
        ("/v1/completions", b'{"model": "m", "max_tokens": 3}', {}, "missing required field 'prompt'"),
        (
            "/v1/completions",
            b'{"model": "m", "prompt": []}',
            {},
            "'prompt' must be a string or a non-empty list",
        ),
        ("/v1/chat/completions", b'{"model": "m", "prompt": "hi"}', {}, "missing required field 'messages'"),
        ("/v1/chat/completions", b'{"messages": "hi"}', {}, "'messages' must be a non-empty list"),
        ("/v1/completions", b'{"model": 5, "prompt": "hi"}', {}, "'model' must be a string"),
        ("/v1/completions", b'{"prompt": "hi", "stream": "yes"}', {}, "'stream' must be true or false"),
        ("/v1/completions", b'{"prompt": "hi"}', {"X-Request-Id": "a:b"}, "X-Request-Id"),
    ],
)
def test_bad_requests_are_400_and_reach_no_backend(
    path: str, raw: bytes, headers: dict, message: str
) -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            status, _, body = await h.post(path, raw, headers)
            err = error_of(body)
            assert status == 400
            assert err["type"] == "invalid_request_error" and err["code"] == 400
            assert message in err["message"]
            assert h.prefill[0].received == [] and h.decode[0].received == []
            assert await metric(h, 'proxy_errors_total{leg="request"}') == 1

    run(scenario())


def test_model_is_optional() -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            status, _, _ = await h.post("/v1/completions", {"prompt": "t1", "max_tokens": 2})
            assert status == 200

    run(scenario())


@pytest.mark.parametrize("stream", [True, False])
def test_prefill_http_error_is_502_naming_leg_and_instance(stream: bool) -> None:
    async def scenario() -> None:
        async with proxy_with("example", prefill=[FakeBehavior(status=500)]) as h:
            status, _, raw = await h.post("/v1/completions", completion_body(stream=stream))
            err = error_of(raw)
            assert status == 502 and err["code"] == 502
            assert err["message"] == f"prefill leg to {h.prefill[0].url}: HTTP 500: fake failure 500"
            assert err["leg"] == "prefill" and err["instance"] == h.prefill[0].url
            assert h.decode[0].received == []
            assert await metric(h, 'proxy_errors_total{leg="prefill"}') == 1

    run(scenario())


def test_prefill_timeout_is_504() -> None:
    async def scenario() -> None:
        async with proxy_with("example", prefill=[FakeBehavior(delay_s=10)], prefill_timeout_s=0.3) as h:
            status, _, raw = await h.post("/v1/completions", completion_body())
            assert status == 504 and error_of(raw)["type"] == "gateway_timeout"
            assert error_of(raw)["message"] == f"prefill leg to {h.prefill[0].url}: timed out after 0.3 s"
            await asyncio.wait_for(h.prefill[0].disconnected.wait(), 10)  # the leg was abandoned upstream too

    run(scenario())


@pytest.mark.parametrize("role", ["prefill", "decode"])
def test_backend_down_is_a_fast_503_and_unhealthy(role: str) -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        kwargs = {role: [dead]}
        async with proxy_with("example", **kwargs) as h:
            status, _, raw = await h.post("/v1/completions", completion_body())
            err = error_of(raw)
            assert status == 503 and err["type"] == "service_unavailable"
            assert err["message"].startswith(f"{role} instance {dead} is unreachable")
            assert "refused" in err["message"].lower()
            status, body = await h.get_json("/health")
            assert status == 503
            assert body["status"] == "unhealthy" and list(body["down"]) == [dead]
            assert dead in body["error"]["message"]

    run(scenario())


def test_health_reports_a_backend_whose_health_fails() -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(health_status=503)]) as h:
            status, body = await h.get_json("/health")
            assert status == 503
            assert body["down"] == {h.decode[0].url: "HTTP 503"}
            assert body["backends"][h.prefill[0].url] == {"role": "prefill", "status": "ok"}

    run(scenario())


def test_health_ok_when_all_answer() -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            status, body = await h.get_json("/health")
            assert status == 200 and body["status"] == "ok" and len(body["backends"]) == 2

    run(scenario())


@pytest.mark.parametrize("stream", [True, False])
def test_decode_http_error_before_the_stream_is_502(stream: bool) -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(status=503)]) as h:
            status, _, raw = await h.post("/v1/completions", completion_body(stream=stream))
            assert status == 502
            assert error_of(raw)["message"] == f"decode leg to {h.decode[0].url}: HTTP 503: fake failure 503"

    run(scenario())


def test_decode_total_timeout_non_streaming_is_504() -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(delay_s=10)], decode_timeout_s=0.3) as h:
            status, _, raw = await h.post("/v1/completions", completion_body(stream=False))
            assert status == 504
            assert error_of(raw)["message"] == f"decode leg to {h.decode[0].url}: timed out after 0.3 s"

    run(scenario())


def test_decode_dying_mid_stream_ends_with_an_sse_error_event() -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(chunks=6, fault="drop", fault_after=2)]) as h:
            status, chunks = await h.stream("/v1/completions", completion_body(), {"X-Request-Id": "r1"})
            assert status == 200
            assert (
                chunks[:2] == h.decode[0].stream_events("/v1/completions", completion_body(), "cmpl-r1")[:2]
            )
            assert len(chunks) == 4
            assert chunks[2].startswith(b"data: {") and chunks[2].endswith(b"\n\n")
            err = orjson.loads(chunks[2][len(b"data: ") :])["error"]
            assert err["code"] == 502 and err["leg"] == "decode"
            assert (
                err["message"].startswith(f"decode leg to {h.decode[0].url}: ")
                and "mid-stream" in err["message"]
            )
            timing = parse_timing_comment(chunks[3])
            assert timing["error"] == err["message"] and timing["chunks"] == 2
            assert b"[DONE]" not in b"".join(chunks)
            assert await metric(h, 'proxy_errors_total{leg="decode"}') == 1

    run(scenario())


def test_decode_stalling_mid_stream_hits_the_chunk_timeout() -> None:
    async def scenario() -> None:
        stall = FakeBehavior(chunks=4, fault="stall", fault_after=1, stall_s=20)
        async with proxy_with("example", decode=[stall], decode_chunk_timeout_s=0.3) as h:
            status, chunks = await h.stream("/v1/completions", completion_body())
            assert status == 200 and len(chunks) == 3
            err = orjson.loads(chunks[1][len(b"data: ") :])["error"]
            assert (
                err["message"]
                == f"decode leg to {h.decode[0].url}: no data for 0.3 s (chunk timeout) (mid-stream)"
            )
            await asyncio.wait_for(h.decode[0].disconnected.wait(), 10)

    run(scenario())


def test_client_disconnect_mid_stream_cancels_the_decode_request(tmp_path) -> None:
    async def scenario() -> None:
        log = tmp_path / "stages.jsonl"
        slow = FakeBehavior(chunks=2000, chunk_interval_s=0.01)
        async with proxy_with("example", decode=[slow], stage_log=log) as h:
            async with aiohttp.ClientSession() as client:
                resp = await client.post(h.url + "/v1/completions", json=completion_body())
                assert resp.status == 200
                for _ in range(2):
                    await resp.content.readuntil(b"\n\n")
                resp.close()  # the client goes away mid-stream
            await asyncio.wait_for(h.decode[0].disconnected.wait(), 10)
            assert h.decode[0].disconnects == 1

            async def none_in_flight() -> bool:  # book-keeping finishes right after the cancel
                return await metric(h, "proxy_requests_in_flight") == 0

            await wait_for_async(none_in_flight, "no request in flight", timeout_s=5)
            assert await metric(h, 'proxy_errors_total{leg="client"}') == 1
            assert all(i.outstanding == 0 for p in h.state.pools() for i in p.instances())
        (record,) = [orjson.loads(line) for line in log.read_bytes().splitlines()]
        assert record["error"] == "client disconnected before the stream ended"

    run(scenario())


def test_client_disconnect_during_prefill_cancels_the_prefill_leg() -> None:
    async def scenario() -> None:
        async with proxy_with("example", prefill=[FakeBehavior(delay_s=20)]) as h:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as client:
                with pytest.raises(TimeoutError):
                    await client.post(h.url + "/v1/completions", json=completion_body())
            await asyncio.wait_for(h.prefill[0].disconnected.wait(), 10)
            assert h.decode[0].received == []

    run(scenario())

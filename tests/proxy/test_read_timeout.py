"""Raw sockets: a client that stalls while sending its request gets 408 and is never counted in flight;
one that does not speak HTTP gets a JSON 400."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson

from fake_upstream import FakeBehavior
from tests.proxy.harness import completion_body, proxy_with, run

TIMEOUT_S = 0.5


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """A whole response with Content-Length, then the connection must close (EOF)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    headers = {k.lower(): v for k, v in headers.items()}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    assert await asyncio.wait_for(reader.read(), 10) == b"", "connection left open"
    return status, headers, body


async def in_flight(h) -> float:
    async with h.session.get(h.url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("proxy_requests_in_flight "):
                return float(line.split()[1])
    raise AssertionError("no in-flight gauge")


def request_head(length: int) -> bytes:
    return (
        b"POST /v1/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_half_a_body_then_silence_gets_408_and_is_not_in_flight() -> None:
    async def scenario() -> None:
        async with proxy_with("example", request_read_timeout_s=TIMEOUT_S) as h:
            body = orjson.dumps(completion_body())
            reader, writer = await connect(h.url)
            writer.write(request_head(len(body)) + body[: len(body) // 2])
            await writer.drain()
            await asyncio.sleep(0.1)  # the proxy has the head and half the body
            assert await in_flight(h) == 0
            status, headers, raw = await read_response(reader)
            writer.close()
            assert status == 408 and headers["connection"] == "close"
            err = orjson.loads(raw)["error"]
            assert err["type"] == "request_timeout" and err["code"] == 408
            assert (
                err["message"]
                == f"the request body did not arrive within {TIMEOUT_S:g} s (--request-read-timeout)"
            )
            assert await in_flight(h) == 0
            assert h.prefill[0].received == [] and h.decode[0].received == []

    run(scenario())


def test_half_a_head_then_silence_gets_408() -> None:
    async def scenario() -> None:
        async with proxy_with("example", request_read_timeout_s=TIMEOUT_S) as h:
            reader, writer = await connect(h.url)
            writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: proxy\r\nContent-Ty")
            await writer.drain()
            status, _, raw = await read_response(reader)
            writer.close()
            assert status == 408
            assert "request head did not arrive" in orjson.loads(raw)["error"]["message"]
            assert await in_flight(h) == 0

    run(scenario())


def test_a_connection_that_sends_nothing_is_closed_quietly() -> None:
    async def scenario() -> None:
        async with proxy_with("example", request_read_timeout_s=TIMEOUT_S) as h:
            reader, writer = await connect(h.url)
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()

    run(scenario())


def test_a_slow_but_timely_body_and_a_long_stream_are_not_cut() -> None:
    async def scenario() -> None:
        slow_stream = FakeBehavior(chunks=8, chunk_interval_s=0.15)  # ~1 s, twice the read bound
        async with proxy_with("example", decode=[slow_stream], request_read_timeout_s=TIMEOUT_S) as h:
            body = orjson.dumps(completion_body(stream=False))
            reader, writer = await connect(h.url)
            writer.write(request_head(len(body)) + body[:10])
            await writer.drain()
            await asyncio.sleep(TIMEOUT_S / 5)
            writer.write(body[10:])
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            writer.close()
            status, chunks = await h.stream("/v1/completions", completion_body())
            assert status == 200 and chunks[-1] == b"data: [DONE]\n\n"
            await asyncio.sleep(TIMEOUT_S * 1.5)  # idle keep-alive longer than the bound: still usable
            status, chunks = await h.stream("/v1/completions", completion_body())
            assert status == 200 and chunks[-1] == b"data: [DONE]\n\n"

    run(scenario())


def test_a_request_that_is_not_http_gets_a_json_400() -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            reader, writer = await connect(h.url)
            writer.write(b"HELLO THERE\r\n\r\n")
            await writer.drain()
            status, headers, raw = await read_response(reader)
            writer.close()
            assert status == 400 and headers["content-type"] == "application/json"
            err = orjson.loads(raw)["error"]
            assert err["type"] == "invalid_request_error" and "Invalid HTTP request" in err["message"]

    run(scenario())

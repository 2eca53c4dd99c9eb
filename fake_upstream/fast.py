"""The fake upstream's fast engine: a raw asyncio protocol with pre-encoded bytes, in its own process.

For benchmarks of the streaming client, where the fake must cost next to nothing per chunk: HTTP/1.1
keep-alive, chunked SSE, streamed completions only (the events of `fake_upstream.content`, one fixed
token text), `GET /v1/models`; no faults, no recording. Pacing: `itl_ms` 0 writes a stream's chunks back
to back, else one chunk every ITL ms. Pinned to one CPU when `cpu` is given; uvloop when installed.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import socket
from typing import Any

import orjson

from fake_upstream import content

_MODEL = "bench"
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"x-request-id: bench\r\n\r\n"
)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_MAX_TOKENS = re.compile(rb'"max_tokens":\s*(\d+)')
_BASE = content.chunk_base("cmpl-bench", _MODEL, chat=False)
_TICKS = os.sysconf("SC_CLK_TCK")


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


_TOKEN = _http_chunk(content.text_chunk(_BASE, " t5", None, chat=False))
_END = _http_chunk(content.DONE) + b"0\r\n\r\n"
_MODELS_BODY = orjson.dumps(content.models_body(_MODEL, _MODEL, 2048))
_MODELS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_MODELS_BODY),
    _MODELS_BODY,
)


def _tail(n_out: int, n_in: int, cache: dict[tuple[int, int], bytes] = {}) -> bytes:  # noqa: B006
    """Usage event, [DONE] and the end of the chunked body (cached per length pair)."""
    key = (n_out, n_in)
    if key not in cache:
        cache[key] = _http_chunk(content.usage_chunk(_BASE, n_in, n_out)) + _END
    return cache[key]


class _SSEProtocol(asyncio.Protocol):
    """One keep-alive connection; answers each complete request (no pipelining needed)."""

    def __init__(self, itl_s: float) -> None:
        self.itl_s = itl_s
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            m = _CONTENT_LENGTH.search(head)
            size = int(m.group(1)) if m else 0
            if len(self.buf) < end + 4 + size:
                return
            body = bytes(self.buf[end + 4 : end + 4 + size])
            del self.buf[: end + 4 + size]
            self._respond(head, body)

    def _respond(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if head.startswith(b"GET /v1/models"):
            self.transport.write(_MODELS)
            return
        m = _MAX_TOKENS.search(body)
        n_out = int(m.group(1)) if m else content.DEFAULT_MAX_TOKENS
        n_in = body.count(b" t") + 1
        if self.itl_s <= 0:
            self.transport.write(_HEAD + _TOKEN * n_out + _tail(n_out, n_in))
            return
        self.transport.write(_HEAD + _TOKEN)
        self._paced(asyncio.get_running_loop(), n_out - 1, n_out, n_in)

    def _paced(self, loop: asyncio.AbstractEventLoop, left: int, n_out: int, n_in: int) -> None:
        def step(left: int) -> None:
            if self.transport is None or self.transport.is_closing():
                return
            if left == 0:
                self.transport.write(_tail(n_out, n_in))
                return
            self.transport.write(_TOKEN)
            loop.call_later(self.itl_s, step, left - 1)

        loop.call_later(self.itl_s, step, left)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _serve(sock: socket.socket, itl_s: float, cpu: int | None, ready: Any) -> None:
    """Server process body."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop ships with the dev environment
        loop = asyncio.new_event_loop()

    async def main() -> None:
        server = await loop.create_server(lambda: _SSEProtocol(itl_s), sock=sock, backlog=4096)
        ready.set()
        await server.serve_forever()

    loop.run_until_complete(main())


class FastUpstream:
    """The fast engine in its own (forked) process; `url` once started, `stop()` to end it."""

    def __init__(self, itl_ms: float, cpu: int | None = None, start_timeout_s: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        ctx = mp.get_context("fork")
        ready = ctx.Event()
        self.proc = ctx.Process(target=_serve, args=(self.sock, itl_ms / 1000, cpu, ready), daemon=True)
        self.proc.start()
        if not ready.wait(start_timeout_s):
            self.stop()
            raise RuntimeError(f"fast fake upstream did not start within {start_timeout_s:g} s")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used."""
        assert self.proc.pid is not None
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.sock.close()

"""The fake vLLM OpenAI server (aiohttp): in the caller's event loop or in a background thread.

Serves POST /v1/completions, /v1/chat/completions, /tokenize; GET /v1/models, /health, /version.
Every generation request is counted (`requests`, `in_flight`, `max_in_flight`) and, unless
`record=False`, recorded (`received`: path, lower-cased headers, parsed body). A client that goes away
while being answered is counted in `disconnects` and sets `disconnected`.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from fake_upstream import content
from fake_upstream.behavior import STREAM_ERROR_MESSAGE, FakeBehavior, for_request
from sse import TIMING_COMMENT_PREFIX

TIMING_STAGES = {
    "request_id": "fake",
    "prefill_ms": 12.5,
    "decode_first_chunk_ms": 3.25,
    "decode_total_ms": 40.0,
    "proxy_overhead_ms": 0.5,
}
# Share of the keep-alive after which a request on an idle connection loses the race with its close.
RACE_SHARE = 0.8
HTTP_ERROR_MESSAGE = "fake failure"  # the error body's message is f"{HTTP_ERROR_MESSAGE} {status}"
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass
class Received:
    """One generation request as the fake saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(content.error_body(status, message), status)


class FakeUpstream:
    """One fake vLLM instance.

    In a running event loop: `url = await fake.start()` ... `await fake.stop()` (or `async with`).
    From synchronous code: `with FakeUpstream(...) as fake:` serves from a background thread.
    """

    def __init__(
        self,
        behavior: FakeBehavior | None = None,
        *,
        model: str = "fake-model",
        root: str | None = None,
        max_model_len: int = 2048,
        record: bool = True,
        keepalive_s: float | None = None,
    ) -> None:
        self.behavior = behavior or FakeBehavior()
        self.model = model
        self.root = root  # what /v1/models reports as the model's path (the client's tokenizer)
        self.max_model_len = max_model_len
        self.record = record
        # A server's keep-alive (default aiohttp's 75 s). Its close races a request sent on the idle
        # connection as the timer fires; that race is made deterministic here: a request that arrives on a
        # connection idle for >= RACE_SHARE of keepalive_s is dropped unanswered (counted in `dropped`).
        self.keepalive_s = keepalive_s
        self.dropped = 0
        self._idle_since: dict[Any, float] = {}  # connection (client address) -> end of its last answer
        self.received: list[Received] = []
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.url = ""
        self.port = 0
        self._script: deque[FakeBehavior] = deque()
        self._ids = itertools.count()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -----------------------------------------------------------------------------------------

    def script(self, *behaviors: FakeBehavior) -> None:
        """The next generation requests get these behaviours, in order; then `behavior` again."""
        self._script.extend(behaviors)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.received]

    def stream_events(self, path: str, body: dict[str, Any], request_id: str) -> list[bytes]:
        """The SSE events (without [DONE]) of a streamed answer to `body` under the server's behaviour."""
        b = self.behavior
        return content.stream_events(path, body, request_id, self.model, b.n_out(body), b.text_bytes)

    def whole_answer(self, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        """The non-streamed answer to `body` under the server's behaviour."""
        return self._whole(self.behavior, path, body, request_id)

    def _whole(self, b: FakeBehavior, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        extra = {} if b.kv_transfer_params is None else {"kv_transfer_params": b.kv_transfer_params}
        extra.update(b.answer_fields or {})
        return content.whole_answer(path, body, request_id, self.model, b.n_out(body), extra)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/version", self._version)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in the running event loop; returns the base URL. A fixed `port` allows a restart."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        keepalive = {} if self.keepalive_s is None else {"keepalive_timeout": self.keepalive_s}
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=1.0,
            **keepalive,
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock, backlog=4096).start()
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(
        self, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 10.0
    ) -> FakeUpstream:
        """Serve from a background thread with its own event loop; returns once it accepts connections."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start(host, port))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError(f"fake upstream did not start within {timeout_s:g} s")
        if failure:
            raise RuntimeError(f"fake upstream failed to start: {failure[0]}") from failure[0]
        return self

    def stop_thread(self, timeout_s: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeUpstream:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    # -- handlers ------------------------------------------------------------------------------------------

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        idle_since = self._idle_since.pop(peer, None)
        if (
            self.keepalive_s is not None
            and transport is not None
            and idle_since is not None
            and time.monotonic() - idle_since >= RACE_SHARE * self.keepalive_s
        ):
            self.dropped += 1  # the keep-alive close won the race: no answer, the connection is gone
            transport.close()
            raise ConnectionResetError("closed by keep-alive")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1  # the client went away while we were answering
            self.disconnected.set()
            raise
        finally:
            self.in_flight -= 1
            if peer is not None:
                self._idle_since[peer] = time.monotonic()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        scripted = self._script.popleft() if self._script else self.behavior
        try:
            b = for_request(scripted, request.headers, body)
        except ValueError as exc:
            return _error(400, str(exc))
        if self.record:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.received.append(Received(request.path, headers, body, raw))
        request_id = "cmpl-" + (request.headers.get("X-Request-Id") or f"fake-{next(self._ids)}")
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.status != 200:
            if b.error_text is not None:
                return web.Response(text=b.error_text, status=b.status)
            return _error(b.status, f"{HTTP_ERROR_MESSAGE} {b.status}")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return _error(400, f"max_tokens must be at least 1, got {max_tokens}.")  # as vLLM says it
        if not body.get("stream"):
            return _json(self._whole(b, request.path, body, request_id))
        n_out = b.n_out(body)
        events = content.stream_events(request.path, body, request_id, self.model, n_out, b.text_bytes)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "x-request-id": request_id}
        )
        await resp.prepare(request)
        if b.first_token_delay_s:
            await asyncio.sleep(b.first_token_delay_s)
        if b.fragment_bytes:
            await _write_fragmented(resp, events, b)
        elif not await _write_events(request, resp, events, n_out, b):
            return resp  # the connection was dropped on purpose
        await resp.write_eof()
        return resp

    async def _tokenize(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        n = content.prompt_tokens(body)
        return _json({"count": n, "max_model_len": self.max_model_len, "tokens": list(range(1, n + 1))})

    async def _models(self, request: web.Request) -> web.Response:
        return _json(content.models_body(self.model, self.root, self.max_model_len))

    async def _health(self, request: web.Request) -> web.Response:
        b = self.behavior
        if b.health_delay_s:
            await asyncio.sleep(b.health_delay_s)
        return web.Response(status=b.health_status)

    async def _version(self, request: web.Request) -> web.Response:
        return _json({"version": "0.0.0+fake"})


async def _write_events(
    request: web.Request, resp: web.StreamResponse, events: list[bytes], n_text: int, b: FakeBehavior
) -> bool:
    """Write the events with the behaviour's pacing and fault; False when the connection was dropped."""
    first_text = 1 if content.is_chat(request.path) else 0  # a chat stream opens with the role event
    fault_at = first_text + b.fault_after if b.fault is not None and b.fault_after < n_text else None
    step = 2 if b.coalesce_pairs else 1
    for i in range(0, len(events), step):
        if fault_at is not None and i >= fault_at:
            fault_at = None
            if b.fault == "stall":
                await asyncio.sleep(b.stall_s)
            elif b.fault == "drop":
                assert request.transport is not None
                request.transport.abort()  # mid-stream crash: the chunked body never terminates
                return False
            else:
                await resp.write(_fault_event(b.fault or ""))
                await resp.write(content.DONE)
                return True
        if i and b.chunk_interval_s:
            await asyncio.sleep(b.chunk_interval_s)
        await _write(resp, b"".join(events[i : i + step]), b.split_events)
    if b.timing_comment:
        await resp.write(TIMING_COMMENT_PREFIX + orjson.dumps(TIMING_STAGES) + b"\n\n")
    if b.send_done:
        await _write(resp, content.DONE, b.split_events)
    return True


def _fault_event(fault: str) -> bytes:
    if fault == "malformed":
        return b"data: {this is not json\n\n"
    if fault == "not_object":
        return b"data: [1, 2, 3]\n\n"
    return content.sse(
        {"error": {"object": "error", "message": STREAM_ERROR_MESSAGE, "type": "InternalServerError"}}
    )


async def _write(resp: web.StreamResponse, data: bytes, split: bool) -> None:
    if not split:
        await resp.write(data)
        return
    cut = len(data) // 2
    await resp.write(data[:cut])
    await asyncio.sleep(0.001)  # let the first piece reach the client on its own
    await resp.write(data[cut:])


async def _write_fragmented(resp: web.StreamResponse, events: list[bytes], b: FakeBehavior) -> None:
    whole = b"".join(events) + (content.DONE if b.send_done else b"")
    assert b.fragment_bytes
    for i in range(0, len(whole), b.fragment_bytes):
        await resp.write(whole[i : i + b.fragment_bytes])
        await asyncio.sleep(b.chunk_interval_s)

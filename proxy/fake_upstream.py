"""A minimal vLLM-like OpenAI server (aiohttp) for the proxy's tests and benchmark.

Non-streamed requests get one JSON completion at once (a prefill leg); streamed ones get `chunks` SSE
events then `data: [DONE]`. `FakeBehavior` injects failures: HTTP errors, delays, a connection dropped
mid-stream, a stalled stream. Every request is recorded (path, headers, parsed body) unless disabled,
and a client that goes away mid-stream is noticed (`disconnected`).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

_DONE = b"data: [DONE]\n\n"


@dataclass
class FakeBehavior:
    """How the fake answers. Times are seconds."""

    chunks: int = 4  # content events per streamed answer
    chunk_interval_s: float = 0.0  # sleep between events
    text_bytes: int = 0  # pad each event's text to at least this many bytes
    status: int = 200  # status of /v1/completions and /v1/chat/completions
    delay_s: float = 0.0  # before answering
    fail_after_chunks: int | None = None  # drop the connection after this many events
    stall_after_chunks: int | None = None  # go silent (connection open) after this many events
    stall_s: float = 30.0
    kv_transfer_params: dict[str, Any] | None = None  # put into non-streamed answers
    health_status: int = 200
    send_done: bool = True  # end the stream with data: [DONE]
    coalesce_pairs: bool = False  # write events two at a time (one TCP write holds two events)
    fragment_bytes: int | None = None  # write the whole stream in pieces this small (events cut anywhere)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    """One fake vLLM instance. `await start()` -> base URL; `await stop()`."""

    behavior: FakeBehavior = field(default_factory=FakeBehavior)
    model: str = "fake-model"
    record: bool = True
    received: list[Received] = field(default_factory=list)
    disconnects: int = 0
    url: str = ""

    def __post_init__(self) -> None:
        self.disconnected = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, backlog=2048).start()
        self.url = f"http://{host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- content -----------------------------------------------------------------------------------------

    def stream_events(self, path: str, body: dict[str, Any], request_id: str) -> list[bytes]:
        """The SSE events (without [DONE]) a streamed answer to `body` carries."""
        chat = path.endswith("/chat/completions")
        obj = "chat.completion.chunk" if chat else "text_completion"
        n = self.behavior.chunks
        events = []
        for i in range(n):
            text = f" t{i}"
            if self.behavior.text_bytes > len(text):
                text += "x" * (self.behavior.text_bytes - len(text))
            finish = "length" if i == n - 1 else None
            if chat:
                delta: dict[str, Any] = {"content": text}
                if i == 0:
                    delta["role"] = "assistant"
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish,
                }
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            event = {"id": request_id, "object": obj, "created": 0, "model": self.model, "choices": [choice]}
            events.append(b"data: " + orjson.dumps(event) + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}
            event = {
                "id": request_id,
                "object": obj,
                "created": 0,
                "model": self.model,
                "choices": [],
                "usage": usage,
            }
            events.append(b"data: " + orjson.dumps(event) + b"\n\n")
        return events

    def whole_answer(self, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        n = int(body.get("max_tokens") or self.behavior.chunks)
        text = "".join(f" t{i}" for i in range(n))
        if path.endswith("/chat/completions"):
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
            obj = "text_completion"
        answer: dict[str, Any] = {
            "id": request_id,
            "object": obj,
            "created": 0,
            "model": self.model,
            "choices": [choice],
            "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n},
        }
        if self.behavior.kv_transfer_params is not None:
            answer["kv_transfer_params"] = self.behavior.kv_transfer_params
        return answer

    # -- handlers ----------------------------------------------------------------------------------------

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._answer(request)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1  # the client (the proxy) went away while we were answering
            self.disconnected.set()
            raise

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        b = self.behavior
        raw = await request.read()
        body = orjson.loads(raw)
        if self.record:
            headers = {
                k.lower(): v
                for k, v in request.headers.items()
                if k.lower() in ("x-request-id", "authorization")
            }
            self.received.append(Received(request.path, headers, body))
        request_id = "cmpl-" + request.headers.get("X-Request-Id", uuid.uuid4().hex)
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.status != 200:
            err = {"error": {"message": f"fake failure {b.status}", "type": "fake", "code": b.status}}
            return web.json_response(err, status=b.status)
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(self.whole_answer(request.path, body, request_id)),
                content_type="application/json",
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        await self._stream(request, resp, self.stream_events(request.path, body, request_id))
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse, events: list[bytes]) -> None:
        b = self.behavior
        if b.fragment_bytes:
            whole = b"".join(events) + (_DONE if b.send_done else b"")
            for i in range(0, len(whole), b.fragment_bytes):
                await resp.write(whole[i : i + b.fragment_bytes])
                await asyncio.sleep(b.chunk_interval_s)
            await resp.write_eof()
            return
        step = 2 if b.coalesce_pairs else 1
        for i in range(0, len(events), step):
            if b.fail_after_chunks is not None and i >= b.fail_after_chunks:
                assert request.transport is not None
                request.transport.abort()  # mid-stream crash: the chunked body never terminates
                return
            if b.stall_after_chunks is not None and i >= b.stall_after_chunks:
                await asyncio.sleep(b.stall_s)
            await resp.write(b"".join(events[i : i + step]))
            if b.chunk_interval_s:
                await asyncio.sleep(b.chunk_interval_s)
        if b.send_done:
            await resp.write(_DONE)
        await resp.write_eof()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=self.behavior.health_status)

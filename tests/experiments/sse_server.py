"""A minimal OpenAI-compatible streaming server imitating vLLM, with switchable faults (tests only).

Serves ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` on 127.0.0.1 (ephemeral port) from
an aiohttp app running in a background thread with its own event loop. A streamed request with
``max_tokens=N`` gets N text events (`` t0``, `` t1``, ...), a usage event
``{"choices": [], "usage": {"prompt_tokens": P, "completion_tokens": N}}`` (P = words in the prompt, which is
exact for the testbed's word-level tokenizer) and ``data: [DONE]``.

A request's behaviour (`MODES`) is picked, first match wins, by the header ``x-fake-mode``, the body field
``fake_mode``, a word ``fake_mode=MODE`` in the prompt, or the server's default ``mode``. Delays likewise:
header ``x-fake-first-token-delay`` / body ``fake_first_token_delay_s`` and header ``x-fake-chunk-delay`` /
body ``fake_chunk_delay_s`` (seconds), else the server's defaults.

Run standalone: ``python -m tests.experiments.sse_server --port 8000 --chunk-delay 0.01``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

MODES = (
    "ok",  # a normal stream
    "http400",  # HTTP 400 with vLLM's error body
    "http500",  # HTTP 500 with an error body
    "malformed",  # a non-JSON `data:` line after `fault_after` chunks
    "drop",  # connection closed mid-stream after `fault_after` chunks
    "no_done",  # all chunks and usage, then EOF without `data: [DONE]`
    "stream_error",  # an in-stream `data: {"error": {...}}` event after `fault_after` chunks
    "timing",  # a `: proxy-timing {json}` comment before `data: [DONE]`
    "empty",  # usage and [DONE] but no text chunk
    "not_object",  # a `data:` line holding JSON that is not an object, after `fault_after` chunks
    "split",  # a normal stream, every event written in two pieces cut mid-line, 1 ms apart
)
TIMING_STAGES = {
    "request_id": "fake",
    "prefill_ms": 12.5,
    "decode_first_chunk_ms": 3.25,
    "decode_total_ms": 40.0,
    "proxy_overhead_ms": 0.5,
}
STREAM_ERROR_MESSAGE = "fake engine failure"
HTTP_ERROR_MESSAGE = "fake bad request"
_MODE_IN_PROMPT = re.compile(r"\bfake_mode=(\w+)")


@dataclass
class FakeServerConfig:
    """Defaults for every request; a request can override mode and delays (see module doc)."""

    model: str = "fake-model"
    root: str | None = None  # what /v1/models reports as the model's path (tokenizer)
    mode: str = "ok"
    first_token_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    fault_after: int = 2  # text chunks sent before a mid-stream fault


@dataclass
class ServerStats:
    """What the server saw (read from the test thread; updated on the server's loop)."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _prompt_of(body: dict[str, Any]) -> str:
    if "messages" in body:
        return " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


class FakeOpenAIServer:
    """The fake vLLM server; use as a context manager or call `start` / `stop`."""

    def __init__(self, config: FakeServerConfig | None = None, **overrides: Any) -> None:
        self.config = config or FakeServerConfig(**overrides)
        if self.config.mode not in MODES:
            raise ValueError(f"unknown fake mode {self.config.mode!r}; choose one of {', '.join(MODES)}")
        self.stats = ServerStats()
        self.port = 0
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> FakeOpenAIServer:
        """Start serving in a background thread; returns once the port accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=1.0)
                loop.run_until_complete(self._runner.setup())
                loop.run_until_complete(web.SockSite(self._runner, sock).start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError(f"fake server did not start within {timeout_s} s")
        if failure:
            raise RuntimeError(f"fake server failed to start: {failure[0]}") from failure[0]
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- app --------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        cfg = self.config
        entry = {
            "id": cfg.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": cfg.root or cfg.model,
            "parent": None,
            "max_model_len": 2048,
        }
        return web.json_response(
            {"object": "list", "data": [entry]}, dumps=lambda o: orjson.dumps(o).decode()
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    def _pick(self, request: web.Request, body: dict[str, Any]) -> tuple[str, float, float]:
        cfg = self.config
        found = _MODE_IN_PROMPT.search(_prompt_of(body))
        mode = request.headers.get("x-fake-mode") or body.get("fake_mode") or (found and found.group(1))
        first = request.headers.get("x-fake-first-token-delay", body.get("fake_first_token_delay_s"))
        chunk = request.headers.get("x-fake-chunk-delay", body.get("fake_chunk_delay_s"))
        return (
            str(mode or cfg.mode),
            cfg.first_token_delay_s if first is None else float(first),
            cfg.chunk_delay_s if chunk is None else float(chunk),
        )

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            return await self._stream(request, chat)
        finally:
            stats.in_flight -= 1

    async def _stream(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error_response(400, "request body is not JSON")
        self.stats.bodies.append(body)
        mode, first_delay, chunk_delay = self._pick(request, body)
        if mode not in MODES:
            return _error_response(400, f"unknown fake mode {mode!r}")
        if mode in ("http400", "http500"):
            return _error_response(int(mode[4:]), HTTP_ERROR_MESSAGE)
        n_out = int(body.get("max_tokens") or 16)
        n_in = len(_prompt_of(body).split())
        rid = request.headers.get("x-request-id") or f"cmpl-fake-{next(self._ids)}"
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "x-request-id": rid}
        )
        await resp.prepare(request)
        base = {
            "id": rid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model", self.config.model),
        }
        if first_delay > 0:
            await asyncio.sleep(first_delay)
        if chat:  # vLLM opens a chat stream with the role and empty content
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            await resp.write(_sse({**base, "choices": [role]}))
        sent = n_out if mode != "empty" else 0
        for i in range(sent):
            if i and chunk_delay > 0:
                await asyncio.sleep(chunk_delay)
            if i == self.config.fault_after and mode in ("malformed", "drop", "stream_error", "not_object"):
                return await _fault(request, resp, mode)
            finish = "length" if i == n_out - 1 else None
            text = f" t{i}"
            choice = (
                {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}
                if chat
                else {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": finish,
                    "stop_reason": None,
                }
            )
            await _write(resp, _sse({**base, "choices": [choice]}), mode == "split")
        usage = {"prompt_tokens": n_in, "total_tokens": n_in + sent, "completion_tokens": sent}
        await _write(resp, _sse({**base, "choices": [], "usage": usage}), mode == "split")
        if mode == "timing":
            await resp.write(b": proxy-timing " + orjson.dumps(TIMING_STAGES) + b"\n\n")
        if mode != "no_done":
            await _write(resp, b"data: [DONE]\n\n", mode == "split")
        await resp.write_eof()
        return resp


async def _write(resp: web.StreamResponse, data: bytes, split: bool) -> None:
    if not split:
        await resp.write(data)
        return
    cut = len(data) // 2
    await resp.write(data[:cut])
    await asyncio.sleep(0.001)  # let the first piece reach the client on its own
    await resp.write(data[cut:])


def _error_response(status: int, message: str) -> web.Response:
    kind = "BadRequestError" if status == 400 else "InternalServerError"
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def _fault(request: web.Request, resp: web.StreamResponse, mode: str) -> web.StreamResponse:
    if mode == "malformed":
        await resp.write(b"data: {this is not json\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    elif mode == "not_object":
        await resp.write(b"data: [1, 2, 3]\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    elif mode == "stream_error":
        err = {"error": {"object": "error", "message": STREAM_ERROR_MESSAGE, "type": "InternalServerError"}}
        await resp.write(_sse(err))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    else:  # drop: close the socket in the middle of the chunked body
        assert request.transport is not None
        request.transport.abort()
    return resp


def main() -> None:
    p = argparse.ArgumentParser(description="Fake vLLM OpenAI streaming server (tests, benches).")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--model", default="fake-model")
    p.add_argument("--root", default=None, help="model path that /v1/models reports")
    p.add_argument("--mode", choices=MODES, default="ok")
    p.add_argument("--first-token-delay", type=float, default=0.0)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    args = p.parse_args()
    cfg = FakeServerConfig(args.model, args.root, args.mode, args.first_token_delay, args.chunk_delay)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"fake OpenAI server on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(FakeOpenAIServer(cfg).app(), sock=sock, print=None)


if __name__ == "__main__":
    main()

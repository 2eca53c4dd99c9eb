"""The testbed's one streaming client: one pooled aiohttp session, open- or closed-loop arrivals.

Every request yields one `Record` (experiments.schema): scheduled, sent, first byte, every content chunk
and end times in monotonic ns, plus send/end in epoch ns; token counts from the server's `usage`; HTTP
status and error text (an error event in the stream, a non-200 answer); the proxy's stage timings when the
endpoint is our proxy. `send_request` is the one request the runner, the planner's probe and the benches
send; TTFT is the first chunk that carried text, ITL the gaps between such chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from experiments.schema import Record, StageTimes, convert
from experiments.schema.records import CANCELLED
from experiments.workloads import RequestSpec
from sse import TIMING_COMMENT_PREFIX

_MAX_ERROR_CHARS = 500
NO_TEXT = "stream carried no output text"  # the error of a stream that ended well but carried no text
# Idle pooled connections are closed after this long, well before vLLM's uvicorn closes them (5 s, its
# --timeout-keep-alive default; our proxy keeps them 75 s): a connection the server may be closing is never
# sent on. The race it closes: a request sent as the server's keep-alive timer fires fails with
# ServerDisconnectedError before any response byte (seen on a bursty trace with idle gaps).
KEEPALIVE_S = 2.0
# Failures that mean the connection died under a request the server never answered (no response byte):
# retried once, on a new connection, and counted in the record's `retries`.
_RETRYABLE = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError)


@dataclass
class ClientConfig:
    """How to talk to the endpoint."""

    endpoint: str
    model: str
    api: str = "completions"  # or "chat"
    ignore_eos: bool = True
    temperature: float = 0.0
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_concurrency: int | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        path = "/v1/chat/completions" if self.api == "chat" else "/v1/completions"
        return self.endpoint.rstrip("/") + path


def build_body(spec: RequestSpec, cfg: ClientConfig) -> dict[str, Any]:
    """The OpenAI request body for one spec (streamed, with usage in the last chunk)."""
    body: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": spec.output_tokens,
        "temperature": cfg.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": cfg.ignore_eos,
    }
    if cfg.api == "chat":
        body["messages"] = [{"role": "user", "content": spec.prompt}]
    else:
        body["prompt"] = spec.prompt
    body.update(cfg.extra_body)
    return body


def new_record(spec: RequestSpec, warmup: bool, scheduled_mono_ns: int | None) -> Record:
    return Record(
        index=spec.index,
        warmup=warmup,
        input_tokens_expected=spec.input_tokens,
        output_tokens_expected=spec.output_tokens,
        scheduled_mono_ns=scheduled_mono_ns,
    )


def _chunk_text(event: dict[str, Any]) -> str | None:
    choices = event.get("choices")
    if not choices:
        return None
    choice = choices[0]
    if "text" in choice:
        return choice["text"]
    delta = choice.get("delta") or {}
    return delta.get("content") or delta.get("reasoning_content")


_JSON_HEADERS = {"Content-Type": "application/json"}
_GO_ON, _DONE, _STREAM_ERROR = 0, 1, 2


def _on_line(raw: bytes, now: int, record: Record) -> int:
    """Handle one SSE line that arrived at `now`: _DONE at `data: [DONE]`, _STREAM_ERROR after an error
    event (recorded), else _GO_ON. Raises ValueError for a line that is not SSE or not a JSON object."""
    line = raw.strip()
    if not line:
        return _GO_ON
    if line[:1] == b":":  # SSE comment; ours carries the proxy's stage timings
        if line.startswith(TIMING_COMMENT_PREFIX):
            timing = orjson.loads(line[len(TIMING_COMMENT_PREFIX) :])
            record.stages = convert(timing, StageTimes, "the proxy's timing comment")
        return _GO_ON
    if not line.startswith(b"data:"):
        raise ValueError(f"malformed SSE line: {line[:120]!r}")
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return _DONE
    event = orjson.loads(payload)
    if not isinstance(event, dict):
        raise ValueError(f"SSE event is not a JSON object: {payload[:120]!r}")
    if "error" in event:
        err = event["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        record.error = f"stream error: {msg}"
        return _STREAM_ERROR
    if _chunk_text(event):
        record.chunk_mono_ns.append(now)
    usage = event.get("usage")
    if isinstance(usage, dict):
        record.prompt_tokens = usage.get("prompt_tokens")
        record.completion_tokens = usage.get("completion_tokens")
    return _GO_ON


OnRecord = Callable[[Record], None]


async def send_request(
    session: aiohttp.ClientSession,
    spec: RequestSpec,
    cfg: ClientConfig,
    record: Record | None = None,
    on_first_token: OnRecord | None = None,
) -> Record:
    """Send one streamed request and fill `record` (a new one by default) in place; never raises for
    request failures: the record's `ok` and `error` say how it ended.

    The body is read as it arrives (`iter_any`: one step per network read, not per line); every SSE line
    of one read gets that read's arrival time, as in vLLM's benchmark client. `on_first_token(record)` is
    called once, right after the read that brought the first chunk carrying text.
    """
    if record is None:
        record = new_record(spec, False, None)
    body = orjson.dumps(build_body(spec, cfg))
    record.sent_epoch_ns = time.time_ns()
    record.sent_mono_ns = time.monotonic_ns()
    while True:
        try:
            return await _attempt(session, body, cfg, record, on_first_token)
        except _RETRYABLE as exc:
            if record.retries or record.status is not None or record.first_byte_mono_ns is not None:
                record.error = f"{type(exc).__name__}: {exc}"
                return record
            # The connection died before any answer: send again once; TTFT still counts from the first send.
            record.retries += 1
            record.retry_error = f"{type(exc).__name__}: {exc}"


def _end(record: Record) -> None:
    record.end_mono_ns = time.monotonic_ns()
    record.end_epoch_ns = time.time_ns()


async def _attempt(
    session: aiohttp.ClientSession,
    body: bytes,
    cfg: ClientConfig,
    record: Record,
    on_first_token: OnRecord | None,
) -> Record:
    """One try of `send_request`; raises only the `_RETRYABLE` failures (and cancellation)."""
    chunks: list[int] = record.chunk_mono_ns
    try:
        async with session.post(cfg.url, data=body, headers=_JSON_HEADERS) as resp:
            record.status = resp.status
            record.request_id = resp.headers.get("x-request-id")
            if resp.status != 200:
                text = (await resp.text(errors="replace"))[:_MAX_ERROR_CHARS]
                record.error = f"HTTP {resp.status}: {text.strip()}"
                return record
            done = False
            tail = b""
            async for data in resp.content.iter_any():
                now = time.monotonic_ns()
                if record.first_byte_mono_ns is None:
                    record.first_byte_mono_ns = now
                lines = (tail + data if tail else data).split(b"\n")
                tail = lines.pop()  # an incomplete last line waits for the next read
                for raw in lines:
                    if not raw:  # the blank line that ends each event
                        continue
                    state = _on_line(raw, now, record)
                    if state == _STREAM_ERROR:
                        return record
                    done = done or state == _DONE
                if on_first_token is not None and chunks:
                    on_first_token(record)
                    on_first_token = None
            if tail:  # a last line without a newline
                state = _on_line(tail, now, record)
                if state == _STREAM_ERROR:
                    return record
                done = done or state == _DONE
            if not done:
                record.error = "stream ended without data: [DONE]"
            elif not chunks:
                record.error = NO_TEXT
            else:
                record.ok = True
                record.first_token_mono_ns = chunks[0]
    except ValueError as exc:  # orjson.JSONDecodeError and SchemaError are ValueErrors
        record.error = f"malformed stream: {exc}"
    except aiohttp.ConnectionTimeoutError:
        record.error = f"connect to {cfg.url} timed out after {cfg.connect_timeout_s:g} s"
    except TimeoutError:
        record.error = f"timed out after {cfg.request_timeout_s:g} s"
    except _RETRYABLE:
        raise  # send_request decides: once more, or the failure
    except aiohttp.ClientError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    except asyncio.CancelledError:  # the run is being interrupted: keep what was timed, then stop
        record.error, record.cancelled = CANCELLED, True
        raise
    finally:
        _end(record)
    return record


def make_session(cfg: ClientConfig, limit: int = 0) -> aiohttp.ClientSession:
    """One pooled session for the whole run (no per-host connection cap by default; idle connections
    closed after KEEPALIVE_S)."""
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s, sock_connect=cfg.connect_timeout_s)
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_S
    )
    return aiohttp.ClientSession(timeout=timeout, connector=connector, json_serialize=lambda o: o)


async def _sleep_until(deadline_ns: int) -> None:
    """Sleep until a monotonic deadline; the last ~1 ms is yielded in short steps for precision."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0.002:
        await asyncio.sleep(delay - 0.001)
    while time.monotonic_ns() < deadline_ns:
        await asyncio.sleep(0)


async def _send_and_report(
    session: aiohttp.ClientSession, spec: RequestSpec, cfg: ClientConfig, record: Record, on_record: OnRecord
) -> Record:
    """`send_request`, then `on_record`; a request cancelled in flight is reported too (as cancelled), one
    cancelled before it was sent is not (it never reached the server)."""
    try:
        await send_request(session, spec, cfg, record)
    finally:
        if record.sent_mono_ns is not None:
            on_record(record)
    return record


async def _cancel_all(tasks: Sequence[asyncio.Task[Record]]) -> None:
    """Cancel the requests in flight and wait until each has reported itself."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_open_loop(
    session: aiohttp.ClientSession,
    specs: Sequence[RequestSpec],
    offsets_s: Sequence[float],
    cfg: ClientConfig,
    on_record: OnRecord,
    warmup: bool = False,
) -> list[Record]:
    """Send each spec at start + its offset; a max-concurrency cap delays sends (lateness shows it).

    Cancelled (the run interrupted), it cancels the requests in flight, which report themselves as
    cancelled through `on_record`, and re-raises.
    """
    sem = asyncio.Semaphore(cfg.max_concurrency) if cfg.max_concurrency else None
    start = time.monotonic_ns() + 1_000_000  # 1 ms to set up the first task
    tasks: list[asyncio.Task[Record]] = []

    async def one(spec: RequestSpec, scheduled: int) -> Record:
        record = new_record(spec, warmup, scheduled)
        if sem is None:
            return await _send_and_report(session, spec, cfg, record, on_record)
        async with sem:
            return await _send_and_report(session, spec, cfg, record, on_record)

    try:
        for spec, off in zip(specs, offsets_s, strict=True):
            scheduled = start + int(off * 1e9)
            await _sleep_until(scheduled)
            tasks.append(asyncio.create_task(one(spec, scheduled)))
        return list(await asyncio.gather(*tasks))
    except asyncio.CancelledError:
        await _cancel_all(tasks)
        raise


async def run_closed_loop(
    session: aiohttp.ClientSession,
    specs: Sequence[RequestSpec],
    users: int,
    cfg: ClientConfig,
    on_record: OnRecord,
    warmup: bool = False,
) -> list[Record]:
    """`users` concurrent users, each sending its next request as soon as the previous one ends.

    Cancelled, the users' requests in flight report themselves as cancelled, as in `run_open_loop`.
    """
    queue = iter(specs)
    out: list[Record] = []

    async def user() -> None:
        for spec in queue:  # the shared iterator hands each spec to exactly one user
            out.append(await _send_and_report(session, spec, cfg, new_record(spec, warmup, None), on_record))

    await asyncio.gather(*(user() for _ in range(max(1, users))))
    return sorted(out, key=lambda r: r.index)

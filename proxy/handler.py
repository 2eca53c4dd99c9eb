"""The two generation endpoints, served straight from ASGI (the proxy's hot path).

`POST /v1/completions` and `POST /v1/chat/completions` are handled here, in front of the Quart app
(`app.asgi_app` is wrapped, see proxy/app.py): per request this skips Quart's request/app contexts,
routing and response wrapping, about a third of the proxy's CPU per request. Everything else
(/v1/models, /health, /metrics, /instances) is ordinary Quart routes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from proxy.connectors import ConnectorProtocolError
from proxy.connectors.p2p_nccl import check_suffix
from proxy.errors import INSTANCE_HEADER, LEG_HEADER, ProxyError, error_json
from proxy.instances import Instance, InstancePool, NoInstanceError
from proxy.legs import LegTimeouts, leg_failure, open_decode, run_prefill
from proxy.policy import prompt_text
from proxy.prefix import block_keys
from proxy.state import ProxyState
from proxy.streaming import DecodeStream
from proxy.timing import TIMING_HEADER, StageTiming
from testbed.route_rule import LOCAL, SPLIT

log = logging.getLogger("proxy")

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
GENERATION_PATHS = frozenset((COMPLETIONS, CHAT))
MAX_BODY_BYTES = 64 * 1024 * 1024

_JSON = "application/json"
_JSON_B = b"application/json"
_TIMING_HEADER_B = TIMING_HEADER.encode()

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RequestRun:
    """Book-keeping of one request: held instances, its retry (at most `retries`, 0 or 1), and the single
    `finish` that records it."""

    __slots__ = ("counted", "failed", "finished", "held", "prefill_tokens", "state", "timing")

    def __init__(self, state: ProxyState, timing: StageTiming) -> None:
        self.state = state
        self.timing = timing
        self.held: list[tuple[InstancePool, Instance]] = []
        self.failed: list[Instance] = []  # instances a leg of this request failed on
        self.finished = False
        self.counted = False  # in the in-flight gauge (from the end of the body read to `finish`)
        self.prefill_tokens = 0  # the prompt's tokens as counted, held on its prefill instance's load

    def count_in_flight(self) -> None:
        self.counted = True
        self.state.metrics.in_flight.inc()

    def acquire(self, pool: InstancePool, keys: list[int] | None = None) -> Instance:
        try:
            inst = pool.acquire(keys=keys)
        except NoInstanceError as exc:
            message = f"{exc}; check the instances or their discovery registration"
            raise ProxyError(503, message, pool_leg(self.state, pool)) from None
        self._hold(pool, inst)
        return inst

    def _hold(self, pool: InstancePool, inst: Instance) -> None:
        self.held.append((pool, inst))
        if pool is self.state.prefill_pool:
            inst.prefill_tokens += self.prefill_tokens

    def _unhold(self, pool: InstancePool, inst: Instance) -> None:
        if pool is self.state.prefill_pool:
            inst.prefill_tokens -= self.prefill_tokens
        pool.release(inst)

    def release(self, pool: InstancePool, inst: Instance) -> None:
        self.held.remove((pool, inst))
        self._unhold(pool, inst)

    def replace(self, pool: InstancePool, inst: Instance, err: ProxyError) -> Instance:
        """A leg failed on `inst` before anything went to the client: report a fault to passive health,
        then return another instance of the role to send the leg to again, or raise `err` (no fault,
        the request's retries (--retries, 0 or 1) are used up, or no other instance is in rotation)."""
        state = self.state
        if err.fault is not None:
            state.health.fault(pool, inst, err.fault, err.message)
        if err.fault is None or self.timing.retries >= state.config.retries:
            raise err
        self.failed.append(inst)
        try:
            other = pool.acquire(exclude=self.failed)
        except NoInstanceError:
            raise err from None
        self.release(pool, inst)
        self._hold(pool, other)
        self.timing.retries += 1
        state.metrics.retries.labels(err.leg).inc()
        log.info("request %s: %s; retrying on %s", self.timing.request_id, err.message, other.url)
        return other

    def finish(self, error_leg: str | None, message: str | None, fault: str | None = None) -> None:
        """Release instances, update metrics, log a failure, write the stage log; only the first call counts.

        `fault`: a backend fault of the decode leg after its answer started (mid-stream).
        """
        if self.finished:
            return
        self.finished = True
        state, timing = self.state, self.timing
        for pool, inst in self.held:
            if fault is not None and pool is state.decode_pool and message is not None:
                state.health.fault(pool, inst, fault, message)
            self._unhold(pool, inst)
        self.held.clear()
        metrics = state.metrics
        if error_leg is not None:
            timing.error = message
            metrics.errors.labels(error_leg).inc()
            _log_failure(timing, error_leg, message)
        if self.counted:
            metrics.in_flight.dec()
        metrics.observe(timing)
        if state.stage_log is not None:
            state.stage_log.write(timing)


def pool_leg(state: ProxyState, pool: InstancePool) -> str:
    return "prefill" if pool is state.prefill_pool else "decode"


def _log_failure(timing: StageTiming, leg: str, message: str | None) -> None:
    """One line per failed request: a warning, except a client that went away (info)."""
    instance = {"prefill": timing.prefill_url, "decode": timing.decode_url}.get(leg)
    gone = leg == "client" and timing.status != 408
    log.log(
        logging.INFO if gone else logging.WARNING,
        "request %s failed: status %s, leg %s, instance %s: %s",
        timing.request_id or "-",
        timing.status if timing.status is not None else "-",
        leg,
        instance or "-",
        message,
    )


def parse_request_body(raw: bytes, path: str) -> dict[str, Any]:
    """Parse and minimally validate an OpenAI request; ProxyError(400) names what is wrong.

    Required: a JSON object; `prompt` (completions) or a non-empty `messages` list (chat). Optional but
    type-checked: `model` (string; vLLM serves its model when omitted), `stream` (boolean or null).
    Everything else is left to vLLM.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, f"request body is not valid JSON: {exc}", "request") from None
    if not isinstance(body, dict):
        raise ProxyError(400, "request body must be a JSON object", "request")
    if path == CHAT:
        messages = body.get("messages")
        if messages is None:
            raise ProxyError(400, "missing required field 'messages'", "request")
        if not isinstance(messages, list) or not messages:
            raise ProxyError(400, "'messages' must be a non-empty list", "request")
    else:
        prompt = body.get("prompt")
        if prompt is None:
            raise ProxyError(400, "missing required field 'prompt'", "request")
        if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
            raise ProxyError(400, "'prompt' must be a string or a non-empty list", "request")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ProxyError(400, "'model' must be a string", "request")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ProxyError(400, "'stream' must be true or false", "request")
    return body


@dataclass(slots=True)
class Reply:
    """What goes back to the client: a whole body, or a stream of SSE events."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    stream: DecodeStream | None = None


async def generate(
    state: ProxyState, run: RequestRun, path: str, raw: bytes, client_id: str | None, auth: str | None
) -> Reply:
    """Run the legs of one request; raises ProxyError for anything that fails before the answer.

    A leg that meets a backend fault is sent once more to another instance of its role (the decode leg
    only while nothing has gone to the client; with p2p_nccl the prefill leg is redone with it), unless
    the proxy runs with --retries 0: then the fault fails the request.
    """
    timing = run.timing
    body = parse_request_body(raw, path)
    stream = bool(body.get("stream"))
    timing.stream = stream
    if client_id is None:
        suffix = uuid.uuid4().hex
    else:
        try:
            suffix = check_suffix(client_id)
        except ValueError as exc:
            raise ProxyError(400, f"X-Request-Id: {exc}", "request") from None
    headers = {"Content-Type": _JSON}
    if auth is not None:
        headers["Authorization"] = auth

    connector = state.connector
    session = state.session
    timeouts = state.timeouts
    assert session is not None, "the app is not serving (before_serving did not run)"
    prefill, decode = route(state, run, body)
    prefill_body = orjson.dumps(connector.prefill_body(body)) if prefill is not None else b""
    need_prefill = prefill is not None
    decode_body = raw
    while True:
        request_id = connector.request_id(prefill, decode, suffix)
        headers["X-Request-Id"] = request_id
        timing.request_id = request_id
        if need_prefill:
            assert prefill is not None
            timing.prefill_url = prefill.url
            try:
                answer = await run_prefill(
                    session,
                    prefill.url,
                    path,
                    prefill_body,
                    headers,
                    timeouts,
                    connector.reads_prefill_response,
                    timing,
                )
            except ProxyError as err:
                prefill = run.replace(state.prefill_pool, prefill, err)
                continue
            run.release(state.prefill_pool, prefill)
            need_prefill = False
            try:
                decode_body = connector.decode_body(raw, body, answer)
            except ConnectorProtocolError as exc:
                raise ProxyError(
                    502, f"prefill leg to {prefill.url}: {exc}", "prefill", prefill.url
                ) from None
        timing.decode_url = decode.url
        timing.decode_send = time.monotonic_ns()
        try:
            resp = await open_decode(session, decode.url, path, decode_body, headers, timeouts, stream)
            data = b""
            if not stream:
                timing.decode_first_chunk = time.monotonic_ns()  # the answer's headers
                data = await read_whole(resp, decode.url, timeouts)
        except ProxyError as err:
            decode = run.replace(state.decode_pool, decode, err)
            if prefill is not None and connector.prefill_pushes_to_decode:
                prefill = run.acquire(state.prefill_pool)  # its KV went to the failed decode instance
                need_prefill = True
            continue
        break

    content_type = resp.headers.get("Content-Type", "text/event-stream" if stream else _JSON).encode()
    out_headers = [(b"content-type", content_type), (b"x-request-id", request_id.encode())]
    timing.status = 200
    if stream:
        return Reply(200, out_headers, stream=DecodeStream(resp, timing, decode.url, timeouts, run.finish))
    timing.decode_end = time.monotonic_ns()
    run.finish(None, None)
    out_headers.append((_TIMING_HEADER_B, timing.to_json()))
    return Reply(200, out_headers, body=data)


def route(state: ProxyState, run: RequestRun, body: dict[str, Any]) -> tuple[Instance | None, Instance]:
    """Choose the request's path by the policy (proxy/policy.py) and acquire its instances:
    (prefill instance, decode instance) for a split, (None, decode instance) for local or passthrough."""
    timing, policy, connector = run.timing, state.policy, state.connector
    p_pool, d_pool = state.prefill_pool, state.decode_pool
    keys = None
    prompt: str | list[int] = ""
    if policy.needs_tokens or p_pool.prefix is not None or d_pool.prefix is not None:
        prompt = prompt_text(body)
        if p_pool.prefix is not None or d_pool.prefix is not None:
            keys = block_keys(prompt)
    if not connector.splits:
        return None, run.acquire(d_pool, keys)
    timing.policy = policy.name
    if policy.needs_tokens:
        timing.prompt_tokens_counted = run.prefill_tokens = state.counter.count(prompt)
    n = run.prefill_tokens
    prefill = None
    if policy.kind != "load" and policy.decide(n, 0, 0) == SPLIT:
        prefill = run.acquire(p_pool, keys)
    decode = run.acquire(d_pool, keys)
    load_split = policy.kind == "load" and (
        policy.decide(n, p_pool.least_prefill_tokens(), decode.outstanding - 1) == SPLIT
    )
    if load_split:
        prefill = run.acquire(p_pool, keys)
    timing.path = SPLIT if prefill is not None else LOCAL
    return prefill, decode


async def read_whole(resp: aiohttp.ClientResponse, url: str, timeouts: LegTimeouts) -> bytes:
    """The whole body of a non-streamed decode answer; ProxyError when reading it fails."""
    try:
        data = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        resp.close()
        raise leg_failure("decode", url, exc, timeouts) from exc
    except BaseException:
        resp.close()
        raise
    resp.release()
    return data


def _error_reply(err: ProxyError, request_id: str | None) -> Reply:
    content_type, data = err.payload()
    headers = [(b"content-type", content_type), (LEG_HEADER, err.leg.encode())]
    if err.instance is not None:
        headers.append((INSTANCE_HEADER, err.instance.encode()))
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    if err.status == 408:
        headers.append((b"connection", b"close"))  # the rest of the body may still come: drop the connection
    return Reply(err.status, headers, body=data)


async def _read_body(receive: Receive, timeout_s: float) -> bytes | None:
    """The request body, or None if the client went away first.

    ProxyError 413 when too large, 408 when it has not all arrived within `timeout_s`.
    """
    parts: list[bytes] = []
    size = 0
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise ProxyError(
                408,
                f"the request body did not arrive within {timeout_s:g} s (--request-read-timeout)",
                "client",
            ) from None
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ProxyError(413, f"request body is larger than {MAX_BODY_BYTES} bytes", "request")
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _send_reply(send: Send, reply: Reply) -> None:
    stream = reply.stream
    if stream is None:
        headers = [*reply.headers, (b"content-length", b"%d" % len(reply.body))]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})
        return
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    try:
        async for event in stream:
            await send({"type": "http.response.body", "body": event, "more_body": True})
    finally:
        await stream.aclose()  # no-op after a complete stream; closes the upstream otherwise
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def handle_generation(state: ProxyState, path: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one generation request over ASGI, with client-disconnect cancellation.

    The body must arrive within `request_read_timeout_s` (else 408); the request counts as in flight
    from then on.
    """
    timing = StageTiming(state.connector.name, path)
    state.metrics.requests.labels(path).inc()
    run = RequestRun(state, timing)
    task = asyncio.current_task()
    assert task is not None
    disconnected = False
    watcher: asyncio.Task[None] | None = None

    async def watch_disconnect() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        task.cancel()

    try:
        try:
            raw = await _read_body(receive, state.config.request_read_timeout_s)
            if raw is None:
                run.finish("client", "client disconnected before sending the body")
                return
            run.count_in_flight()
            watcher = asyncio.create_task(watch_disconnect())
            client_id = auth = None
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    client_id = value.decode("latin-1")
                elif name == b"authorization":
                    auth = value.decode("latin-1")
            reply = await generate(state, run, path, raw, client_id, auth)
        except ProxyError as err:
            timing.status = err.status
            run.finish(err.leg, err.message)
            reply = _error_reply(err, timing.request_id)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            log.exception("internal error on %s", path)
            timing.status = 500
            err = ProxyError(500, f"internal proxy error: {type(exc).__name__}: {exc}", "request")
            run.finish("request", err.message)
            reply = _error_reply(err, timing.request_id)
        await _send_reply(send, reply)
    except asyncio.CancelledError:
        if not disconnected:
            run.finish("client", "cancelled (server shutting down)")
            raise
        task.uncancel()  # our own cancel: the client went away; nothing is left to send
        run.finish("client", "client disconnected before the response started")
    finally:
        if watcher is not None:
            watcher.cancel()


class GenerationFastPath:
    """ASGI middleware: generation POSTs go to `handle_generation`, the rest to the Quart app."""

    def __init__(self, inner: Callable[..., Awaitable[None]], state: ProxyState) -> None:
        self.inner = inner
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in GENERATION_PATHS:
            if scope["method"] == "POST":
                await handle_generation(self.state, scope["path"], scope, receive, send)
                return
            message = f"{scope['method']} {scope['path']} is not allowed; send the request with POST"
            headers = [(b"content-type", _JSON_B), (b"allow", b"POST")]
            await _send_reply(send, Reply(405, headers, body=error_json(405, message)))
            return
        await self.inner(scope, receive, send)

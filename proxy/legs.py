"""The two upstream legs over the shared aiohttp session, with failures mapped to ProxyError."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from proxy.config import ProxyConfig
from proxy.errors import ProxyError, UpstreamClientError, upstream_message
from proxy.timing import StageTiming

_CONNECT_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(aiohttp, "ConnectionTimeoutError", None),) if cls is not None
)
_SOCKET_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(aiohttp, "SocketTimeoutError", None),) if cls is not None
)


@dataclass(frozen=True)
class LegTimeouts:
    """aiohttp timeouts per leg, built once from the config."""

    prefill: aiohttp.ClientTimeout
    decode_stream: aiohttp.ClientTimeout
    decode_whole: aiohttp.ClientTimeout
    health: aiohttp.ClientTimeout
    config: ProxyConfig

    @classmethod
    def from_config(cls, cfg: ProxyConfig) -> LegTimeouts:
        connect = cfg.connect_timeout_s
        return cls(
            prefill=aiohttp.ClientTimeout(total=cfg.prefill_timeout_s, sock_connect=connect),
            # sock_read bounds the gap between chunks of a stream; a non-streamed answer only comes at
            # the end, so that leg has the total bound only.
            decode_stream=aiohttp.ClientTimeout(
                total=cfg.decode_timeout_s, sock_connect=connect, sock_read=cfg.decode_chunk_timeout_s
            ),
            decode_whole=aiohttp.ClientTimeout(total=cfg.decode_timeout_s, sock_connect=connect),
            health=aiohttp.ClientTimeout(total=cfg.health_timeout_s, sock_connect=connect),
            config=cfg,
        )


def connect_failure_reason(exc: aiohttp.ClientConnectorError) -> str:
    """'Connection refused', 'No route to host'... from a failed connect."""
    err = exc.os_error
    if err is not None and err.errno:
        return os.strerror(err.errno)
    return str(exc)


def leg_failure(
    leg: str, url: str, exc: BaseException, timeouts: LegTimeouts, stream: bool = False
) -> ProxyError:
    """Map an aiohttp/timeout exception on a leg to a 502/503/504 ProxyError naming leg, instance, fault."""
    cfg = timeouts.config
    if isinstance(exc, _CONNECT_TIMEOUT_ERRORS):
        message = f"{leg} instance {url} is unreachable: connect timed out after {cfg.connect_timeout_s:g} s"
        return ProxyError(503, message, leg, url, "connect_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        message = f"{leg} instance {url} is unreachable: {connect_failure_reason(exc)}"
        return ProxyError(503, message, leg, url, "unreachable")
    if isinstance(exc, _SOCKET_TIMEOUT_ERRORS) and stream:
        message = f"{leg} leg to {url}: no data for {cfg.decode_chunk_timeout_s:g} s (chunk timeout)"
        return ProxyError(504, message, leg, url, "timeout")
    if isinstance(exc, TimeoutError):
        total = cfg.prefill_timeout_s if leg == "prefill" else cfg.decode_timeout_s
        return ProxyError(504, f"{leg} leg to {url}: timed out after {total:g} s", leg, url, "timeout")
    detail = str(exc) or type(exc).__name__
    return ProxyError(502, f"{leg} leg to {url}: {type(exc).__name__}: {detail}", leg, url, "disconnected")


def http_failure(leg: str, url: str, status: int, data: bytes, content_type: str | None) -> ProxyError:
    """A non-200 answer: 4xx goes back to the client as it is, anything else is a 502."""
    if 400 <= status < 500:
        return UpstreamClientError(status, leg, url, data, content_type)
    return ProxyError(502, f"{leg} leg to {url}: HTTP {status}: {upstream_message(data)}", leg, url)


async def run_prefill(
    session: aiohttp.ClientSession,
    url: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeouts: LegTimeouts,
    parse: bool,
    timing: StageTiming,
) -> dict[str, Any] | None:
    """POST the prefill leg and read its whole answer, stamping prefill_start/prefill_end.

    Returns the parsed JSON if `parse` (else None); raises ProxyError on any failure.
    """
    timing.prefill_start = time.monotonic_ns()
    try:
        async with session.post(url + path, data=body, headers=headers, timeout=timeouts.prefill) as resp:
            data = await resp.read()
            status = resp.status
            content_type = resp.headers.get("Content-Type")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise leg_failure("prefill", url, exc, timeouts) from exc
    timing.prefill_end = time.monotonic_ns()
    if status != 200:
        raise http_failure("prefill", url, status, data, content_type)
    if not parse:
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProxyError(502, f"prefill leg to {url}: response is not JSON", "prefill", url) from None
    if not isinstance(parsed, dict):
        raise ProxyError(502, f"prefill leg to {url}: response is not a JSON object", "prefill", url)
    return parsed


async def open_decode(
    session: aiohttp.ClientSession,
    url: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeouts: LegTimeouts,
    stream: bool,
) -> aiohttp.ClientResponse:
    """POST the decode leg; returns the open 200 response (caller closes it) or raises ProxyError."""
    timeout = timeouts.decode_stream if stream else timeouts.decode_whole
    try:
        resp = await session.post(url + path, data=body, headers=headers, timeout=timeout)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise leg_failure("decode", url, exc, timeouts, stream) from exc
    if resp.status == 200:
        return resp
    try:
        data = await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        data = b""
    finally:
        resp.release()
    raise http_failure("decode", url, resp.status, data, resp.headers.get("Content-Type"))

"""uvicorn's httptools protocol with a bound on the time to read a request's head, and JSON errors.

uvicorn times out idle keep-alive connections only: a connection that sends nothing, or half a request
head, is held forever. Here a timer runs from the connection's start (and from the first byte of each
later request) until the request head is complete. When it fires with part of a head received the
client gets a 408 JSON error; a connection that sent nothing is closed quietly. The body's own bound
is the app's (proxy/handler.py), which answers 408 too. A request that is not HTTP gets uvicorn's 400
as an OpenAI-style JSON error instead of plain text. Pass `protocol_factory(timeout_s)` as uvicorn's
`http`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.errors import error_json

log = logging.getLogger("proxy")


def _closing_response(status: int, reason: bytes, message: str) -> bytes:
    body = error_json(status, message)
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, reason, len(body))
    )
    return head + body


class ProxyHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that drops a connection whose request head is not complete in time, and answers
    a request that is not HTTP with a JSON 400."""

    def __init__(self, *args: Any, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout_s = head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # some bytes of the current request head arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._head_started = False
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is still going out on this connection: leave it be
        if self._head_started:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.warning(
                "client %s: request head incomplete after %g s; answered 408", client, self.head_timeout_s
            )
            message = (
                f"the request head did not arrive within {self.head_timeout_s:g} s (--request-read-timeout)"
            )
            transport.write(_closing_response(408, b"Request Timeout", message))
        transport.close()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(_closing_response(400, b"Bad Request", f"{msg} Send HTTP/1.1."))
        self.transport.close()


def protocol_factory(head_timeout_s: float) -> Callable[..., ProxyHttpProtocol]:
    """What uvicorn.Config(http=...) takes: builds the protocol with the given head timeout."""
    return functools.partial(ProxyHttpProtocol, head_timeout_s=head_timeout_s)

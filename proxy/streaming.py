"""Forward the decode leg's SSE stream event by event, adding the timing comment before `[DONE]`."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import aiohttp

from proxy.errors import sse_error_event
from proxy.legs import LegTimeouts, leg_failure
from proxy.timing import StageTiming

_EVENT_END = b"\n\n"
_DONE = b"data: [DONE]"
MAX_EVENT_BYTES = 16 * 1024 * 1024

# finish(error_leg, error_message, fault): called exactly once when the stream ends, fails or is dropped;
# fault names a backend fault (see ProxyError.fault).
FinishCallback = Callable[[str | None, str | None, str | None], None]


class DecodeStream:
    """Async iterator of the upstream's SSE events, one `bytes` per event, unchanged.

    Whatever the upstream sent is read as it arrives and cut at each blank line; each event (bytes up
    to and including the blank line) is yielded on its own, never merged with its neighbours, so the
    client sees the same event boundaries and bytes. Right before the upstream's `data: [DONE]` event
    (or at the end when there is none) it yields `: proxy-timing {json}`. A failure mid-stream becomes
    an SSE error event (then the timing comment) and ends the stream. `aclose` (called when the client
    goes away) closes the upstream connection so the decode request is cancelled there too.
    """

    __slots__ = (
        "_buf",
        "_done",
        "_finish",
        "_queue",
        "_readany",
        "_resp",
        "_timeouts",
        "_timing",
        "_url",
        "timing_sent",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        timing: StageTiming,
        url: str,
        timeouts: LegTimeouts,
        finish: FinishCallback,
    ) -> None:
        self._resp = resp
        self._readany = resp.content.readany
        self._buf = b""
        self._timing = timing
        self._url = url
        self._timeouts = timeouts
        self._finish = finish
        self._queue: deque[bytes] = deque()
        self._done = False
        self.timing_sent = False

    def __aiter__(self) -> DecodeStream:
        return self

    async def __anext__(self) -> bytes:
        queue = self._queue
        if queue:
            return queue.popleft()
        if self._done:
            raise StopAsyncIteration
        while True:
            try:
                data = await self._readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return self._fail(exc)
            if not data:
                return self._eof()
            buf = self._buf + data if self._buf else data
            if _EVENT_END in buf:
                break
            if len(buf) > MAX_EVENT_BYTES:
                return self._fail(ValueError(f"no event end within {MAX_EVENT_BYTES} bytes"))
            self._buf = buf
        timing = self._timing
        if timing.decode_first_chunk is None:
            timing.decode_first_chunk = time.monotonic_ns()
        size = len(buf)
        start = 0
        while (end := buf.find(_EVENT_END, start)) >= 0:
            end += 2
            event = buf if start == 0 and end == size else buf[start:end]  # usually one event: no copy
            start = end
            if not self.timing_sent:
                if event.startswith(_DONE):
                    timing.decode_end = time.monotonic_ns()
                    self.timing_sent = True
                    queue.append(timing.sse_comment())
                else:
                    timing.chunks += 1
            queue.append(event)
        self._buf = buf[start:] if start < size else b""
        return queue.popleft()

    def _eof(self) -> bytes:
        """Upstream ended: flush an unterminated tail, then the timing comment if not sent yet."""
        queue = self._queue
        if self._buf:
            queue.append(self._buf)
            self._buf = b""
        timing = self._timing
        if not self.timing_sent:
            timing.decode_end = time.monotonic_ns()
            self.timing_sent = True
            self._end(None, None)
            queue.append(timing.sse_comment())
        else:
            self._end(None, None)
        if not queue:
            raise StopAsyncIteration
        return queue.popleft()

    def _fail(self, exc: BaseException) -> bytes:
        fault = None
        if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
            err_status, message = 502, f"decode leg to {self._url}: SSE event too large ({exc})"
        else:
            err = leg_failure("decode", self._url, exc, self._timeouts, stream=True)
            err_status, message, fault = err.status, f"{err.message} (mid-stream)", err.fault
        timing = self._timing
        timing.decode_end = time.monotonic_ns()
        self._queue.append(sse_error_event(err_status, message, leg="decode", instance=self._url))
        if not self.timing_sent:
            self.timing_sent = True
            self._end("decode", message, fault)  # sets timing.error before the comment is rendered
            self._queue.append(timing.sse_comment())
        else:
            self._end("decode", message, fault)
        return self._queue.popleft()

    def _end(self, error_leg: str | None, message: str | None, fault: str | None = None) -> None:
        if self._done:
            return
        self._done = True
        if error_leg is None:
            self._resp.release()  # body fully read: the connection goes back to the pool
        else:
            self._resp.close()
        self._finish(error_leg, message, fault)

    async def aclose(self) -> None:
        """Stop early (client gone or server shutdown): close the upstream connection."""
        if not self._done:
            self._done = True
            self._resp.close()
            self._finish("client", "client disconnected before the stream ended", None)

    def __del__(self) -> None:  # safety net if the server dropped us before iterating
        if not self._done:
            self._done = True
            self._resp.close()
            self._finish("client", "stream dropped before it was sent", None)

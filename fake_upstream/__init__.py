"""One fake vLLM OpenAI server for the tests and benchmarks of the proxy and of the streaming client.

`FakeUpstream` (aiohttp) is scriptable and injects faults: a `FakeBehavior` per server, a queue of
them per request (`script`), or a named mode per request (`MODES`, by header, body field or prompt
word). `FastUpstream` is the same wire format pre-encoded in its own process, for benchmarks where the
fake must cost next to nothing. Standalone: `python -m fake_upstream --port 8100 --chunk-interval 0.01`.

A top-level package (not inside `proxy/` or `tests/`) because both `proxy` and `experiments`
benchmarks, and both test trees, use it: neither has to import the other.
"""

from __future__ import annotations

from fake_upstream.behavior import FAULTS, MODES, STREAM_ERROR_MESSAGE, FakeBehavior
from fake_upstream.fast import FastUpstream
from fake_upstream.server import HTTP_ERROR_MESSAGE, TIMING_STAGES, FakeUpstream, Received

__all__ = [
    "FAULTS",
    "HTTP_ERROR_MESSAGE",
    "MODES",
    "STREAM_ERROR_MESSAGE",
    "TIMING_STAGES",
    "FakeBehavior",
    "FakeUpstream",
    "FastUpstream",
    "Received",
]

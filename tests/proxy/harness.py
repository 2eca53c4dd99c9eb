"""Test harness: fake vLLM upstreams plus the proxy, all served over loopback HTTP in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson
from quart import Quart

from fake_upstream import FakeBehavior, FakeUpstream
from proxy import InstanceSpec, ProxyConfig, create_app, running_app
from proxy.app import ProxyState

T = TypeVar("T")
TEST_TIMEOUT_S = 30.0
# Policies that send every request of these tests through a split (no backlog, prompts >= 0 tokens): the
# fault tests of the split legs run under each (`under_policy`); tests/proxy/test_policies.py has the
# local path's.
SPLITTING_POLICIES = ("split", "threshold:0", "load")
_default_policy = ["split"]


@contextlib.contextmanager
def under_policy(policy: str) -> Iterator[None]:
    """`proxy_with` serves with this --policy unless a test names one (P2P NCCL, passthrough: split)."""
    _default_policy.append(policy)
    try:
        yield
    finally:
        _default_policy.pop()


def run(coro: Coroutine[Any, Any, T], timeout_s: float = TEST_TIMEOUT_S) -> T:
    """Run one async test scenario with an overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def prefill_kv(i: int) -> str:
    return f"127.0.0.1:{21001 + i}"


def decode_kv(i: int) -> str:
    return f"127.0.0.1:{22001 + i}"


@dataclass
class Harness:
    url: str
    session: aiohttp.ClientSession
    app: Quart
    prefill: list[FakeUpstream] = field(default_factory=list)
    decode: list[FakeUpstream] = field(default_factory=list)

    @property
    def state(self) -> ProxyState:
        return self.app.extensions["proxy"]

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self.session.post(self.url + path, data=data, headers=hdrs) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()

    async def stream(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, list[bytes]]:
        """POST and return (status, HTTP chunks of the body, each one reassembled whole)."""
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self.session.post(self.url + path, data=orjson.dumps(body), headers=hdrs) as resp:
            return resp.status, await read_http_chunks(resp)

    async def get_json(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path) as resp:
            return resp.status, orjson.loads(await resp.read())


async def read_http_chunks(resp: aiohttp.ClientResponse) -> list[bytes]:
    """The body as the list of HTTP/1.1 chunks the server sent (chunked transfer encoding)."""
    chunks: list[bytes] = []
    buf = b""
    async for data, end_of_chunk in resp.content.iter_chunks():
        buf += data
        if end_of_chunk and buf:  # (b"", True) can mark the terminating zero-length chunk
            chunks.append(buf)
            buf = b""
    if buf:
        chunks.append(buf)
    return chunks


@contextlib.asynccontextmanager
async def proxy_with(
    connector: str = "example",
    prefill: Sequence[FakeBehavior | str] | None = None,
    decode: Sequence[FakeBehavior | str] | None = None,
    **config: Any,
) -> AsyncIterator[Harness]:
    """Start fakes (a FakeBehavior each, or a URL string used as is) and the proxy in front of them.

    p2p_nccl instances get KV addresses 127.0.0.1:2100x (prefill) and 127.0.0.1:2200x (decode).
    """
    prefill = [FakeBehavior()] if prefill is None else prefill
    decode = [FakeBehavior()] if decode is None else decode
    fakes: list[FakeUpstream] = []
    specs: dict[str, list[InstanceSpec]] = {"prefill": [], "decode": []}
    fakes_by_role: dict[str, list[FakeUpstream]] = {"prefill": [], "decode": []}
    try:
        for role, items in (("prefill", prefill), ("decode", decode)):
            for i, item in enumerate(items):
                if isinstance(item, str):
                    url = item
                else:
                    fake = FakeUpstream(item)
                    url = await fake.start()
                    fakes.append(fake)
                    fakes_by_role[role].append(fake)
                kv = (
                    (prefill_kv(i) if role == "prefill" else decode_kv(i))
                    if connector == "p2p_nccl"
                    else None
                )
                specs[role].append(InstanceSpec(url, kv))
        if connector not in ("passthrough", "p2p_nccl"):
            config.setdefault("policy", _default_policy[-1])
        cfg = ProxyConfig(
            connector=connector,
            prefill=[] if connector == "passthrough" else specs["prefill"],
            decode=specs["decode"],
            **config,
        )
        app = create_app(cfg)
        async with running_app(app) as url, aiohttp.ClientSession() as session:
            yield Harness(url, session, app, fakes_by_role["prefill"], fakes_by_role["decode"])
    finally:
        for fake in fakes:
            await fake.stop()


def completion_body(stream: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "fake-model", "prompt": "t1 t2 t3", "max_tokens": 4, "stream": stream}
    body.update(extra)
    return body


def chat_body(stream: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "t1 t2"}],
        "max_tokens": 4,
        "stream": stream,
    }
    body.update(extra)
    return body


async def metric(h: Any, name: str) -> float:
    """A counter or gauge of the proxy's /metrics by its full name (with labels); missing fails."""
    async with h.session.get(h.url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    raise AssertionError(f"metric {name} not exported")

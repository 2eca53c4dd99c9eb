"""The shared fake vLLM upstream: scripting, modes, extra endpoints, the fast engine and the CLI."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from fake_upstream import FakeBehavior, FakeUpstream, FastUpstream

REPO = Path(__file__).resolve().parents[2]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


async def post(session: aiohttp.ClientSession, url: str, body: dict, **headers: str) -> tuple[int, bytes]:
    async with session.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.read()


def events(raw: bytes) -> list[bytes]:
    return [e for e in raw.split(b"\n\n") if e]


def test_scripted_answers_come_in_order_then_the_default() -> None:
    async def scenario() -> None:
        async with FakeUpstream() as fake, aiohttp.ClientSession() as s:
            fake.script(FakeBehavior(status=500), FakeBehavior(chunks=2))
            body = {"prompt": "a b", "max_tokens": 5, "stream": True}
            statuses = [await post(s, fake.url + "/v1/completions", body) for _ in range(3)]
            assert [st for st, _ in statuses] == [500, 200, 200]
            assert orjson.loads(statuses[0][1])["error"]["message"] == "fake failure 500"
            assert len(events(statuses[1][1])) == 2 + 1  # two tokens, [DONE]
            assert len(events(statuses[2][1])) == 5 + 1  # the request's max_tokens
            assert fake.requests == 3 and len(fake.received) == 3

    run(scenario())


def test_modes_by_header_body_or_prompt_and_unknown_mode_is_a_400() -> None:
    async def scenario() -> None:
        async with FakeUpstream() as fake, aiohttp.ClientSession() as s:
            url = fake.url + "/v1/completions"
            assert (await post(s, url, {"prompt": "x"}, **{"x-fake-mode": "http400"}))[0] == 400
            assert (await post(s, url, {"prompt": "x", "fake_mode": "http500"}))[0] == 500
            assert (await post(s, url, {"prompt": "x fake_mode=http400 y"}))[0] == 400
            status, raw = await post(s, url, {"prompt": "x", "fake_mode": "bogus"})
            assert status == 400 and "unknown fake mode 'bogus'" in orjson.loads(raw)["error"]["message"]

    run(scenario())


def test_chat_stream_opens_with_the_role_and_usage_only_on_request() -> None:
    async def scenario() -> None:
        async with FakeUpstream() as fake, aiohttp.ClientSession() as s:
            body = {"messages": [{"role": "user", "content": "a b c"}], "max_tokens": 2, "stream": True}
            _, raw = await post(s, fake.url + "/v1/chat/completions", body)
            first = orjson.loads(events(raw)[0][len(b"data: ") :])
            assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            assert len(events(raw)) == 1 + 2 + 1
            _, raw = await post(
                s, fake.url + "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}
            )
            usage = orjson.loads(events(raw)[-2][len(b"data: ") :])["usage"]
            assert usage == {"prompt_tokens": 3, "total_tokens": 5, "completion_tokens": 2}

    run(scenario())


def test_tokenize_version_and_models() -> None:
    async def scenario() -> None:
        async with FakeUpstream(root="/models/m", max_model_len=512) as fake, aiohttp.ClientSession() as s:
            status, raw = await post(s, fake.url + "/tokenize", {"prompt": "one two three"})
            assert status == 200 and orjson.loads(raw) == {
                "count": 3,
                "max_model_len": 512,
                "tokens": [1, 2, 3],
            }
            async with s.get(fake.url + "/version") as resp:
                assert (await resp.json())["version"]
            async with s.get(fake.url + "/v1/models") as resp:
                entry = (await resp.json())["data"][0]
                assert entry["root"] == "/models/m" and entry["max_model_len"] == 512

    run(scenario())


def test_fast_engine_streams_the_same_wire_format() -> None:
    server = FastUpstream(itl_ms=1)
    try:

        async def scenario() -> None:
            async with aiohttp.ClientSession() as s:
                status, raw = await post(
                    s, server.url + "/v1/completions", {"prompt": "t1 t2", "max_tokens": 4}
                )
                evs = events(raw)
                assert status == 200 and evs[-1] == b"data: [DONE]"
                assert [orjson.loads(e[6:])["choices"][0]["text"] for e in evs[:4]] == [" t5"] * 4
                assert orjson.loads(evs[4][6:])["usage"]["completion_tokens"] == 4
                async with s.get(server.url + "/v1/models") as resp:
                    assert (await resp.json())["data"][0]["id"] == "bench"

        run(scenario())
    finally:
        server.stop()


def test_cli_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_upstream", "--mode", "http500"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"fake upstream on (http://\S+)", proc.stdout.readline())[1]  # type: ignore[index]

        async def scenario() -> int:
            async with aiohttp.ClientSession() as s:
                return (await post(s, url + "/v1/completions", {"prompt": "x"}))[0]

        assert run(scenario()) == 500
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        FakeBehavior(fault="explode")

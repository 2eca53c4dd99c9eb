"""The profiler's probe requests against the real fake upstream over HTTP: a failed request (an error event
in the stream, an HTTP error) is a ProbeError, never a point; prompts are N random words."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments.client import ClientConfig, make_session
from fake_upstream import HTTP_ERROR_MESSAGE, STREAM_ERROR_MESSAGE, FakeBehavior, FakeUpstream
from planner.probe import ProbeError, decode_batch, prefill_once, stream_once

ROOT = Path(__file__).resolve().parents[2]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def probe(behavior: FakeBehavior, what: str, **kw: Any) -> Any:
    """One probe call (`prefill`, `stream` or `batch`) against a fake upstream with `behavior`."""
    async with FakeUpstream(behavior) as fake:
        cfg = ClientConfig(fake.url, fake.model)
        rng = np.random.default_rng(0)
        async with make_session(cfg) as session:
            if what == "prefill":
                return await prefill_once(session, cfg, 8, rng)
            if what == "stream":
                return await stream_once(session, cfg, 8, 6, rng)
            return await decode_batch(session, cfg, 3, 8, 6, rng, **kw)


def test_an_error_event_fails_a_decode_stream() -> None:
    with pytest.raises(ProbeError, match=f"stream error: {STREAM_ERROR_MESSAGE}"):
        run(probe(FakeBehavior(fault="stream_error"), "stream"))  # two tokens, then the error event


@pytest.mark.parametrize(
    ("behavior", "expected"),
    [
        (FakeBehavior(fault="stream_error", fault_after=0), f"stream error: {STREAM_ERROR_MESSAGE}"),
        (FakeBehavior(status=500), f"HTTP 500: .*{HTTP_ERROR_MESSAGE} 500"),
        (FakeBehavior(send_done=False), r"stream ended without data: \[DONE\]"),
    ],
)
def test_a_failed_prefill_is_an_error(behavior: FakeBehavior, expected: str) -> None:
    with pytest.raises(ProbeError, match=f"prefill of 8 tokens at .* failed: {expected}"):
        run(probe(behavior, "prefill"))


def test_a_one_token_answer_without_text_still_times_the_prefill() -> None:
    """A dummy-weight model's one token may be a special one, streamed with no text: the prefill was timed.
    A decode stream without text is a failure."""
    secs, tokens = run(probe(FakeBehavior(chunks=0), "prefill"))
    assert secs > 0 and tokens == 8  # the fake's usage: 8 prompt words
    with pytest.raises(ProbeError, match="no output text"):
        run(probe(FakeBehavior(chunks=0), "stream"))


def test_one_failed_stream_fails_its_decode_batch_and_ends_the_power_window() -> None:
    ended: list[bool] = []

    async def window(all_started: asyncio.Event, first_ended: asyncio.Event) -> None:
        await all_started.wait()
        await first_ended.wait()
        ended.append(True)

    async def scenario() -> None:
        slow = FakeBehavior(chunk_interval_s=0.05)
        async with FakeUpstream(slow) as fake:
            fake.script(slow, FakeBehavior(fault="stream_error"), slow)
            cfg = ClientConfig(fake.url, fake.model)
            async with make_session(cfg) as session:
                with pytest.raises(ProbeError, match=STREAM_ERROR_MESSAGE):
                    await decode_batch(session, cfg, 3, 8, 40, np.random.default_rng(0), window)
            assert ended == [True]
            assert fake.requests == 3

    run(scenario())


def test_a_decode_batch_times_every_token_and_counts_prompts_by_usage() -> None:
    streams = run(probe(FakeBehavior(), "batch"))
    assert len(streams) == 3
    assert all(len(s.chunks) == 6 and s.prompt_tokens == 8 for s in streams)
    assert all(np.all(np.diff(s.chunks) >= 0) for s in streams)


def test_probe_prompts_are_fresh_random_words_t_i() -> None:
    """N words `t<i>`, i < 100000 (N tokens on the word tokenizer), drawn from the probe's seeded rng as
    before the probe shared the workloads' prompt builder: a profile's prompts stay the same."""

    async def scenario() -> list[str]:
        async with FakeUpstream() as fake:
            cfg = ClientConfig(fake.url, fake.model)
            rng = np.random.default_rng(7)
            async with make_session(cfg) as session:
                assert (await prefill_once(session, cfg, 5, rng))[1] == 5
                assert (await prefill_once(session, cfg, 3, rng))[1] == 3
            return [b["prompt"] for b in fake.bodies]

    draws = np.random.default_rng(7)
    expected = [" ".join(f"t{i}" for i in draws.integers(0, 100_000, size=n)) for n in (5, 3)]
    assert run(scenario()) == expected


def test_the_profiler_stops_at_an_error_event_with_one_line(tmp_path: Path) -> None:
    with FakeUpstream(FakeBehavior(fault="stream_error")) as fake:
        args = [
            sys.executable, "-m", "planner", "profile", "--endpoint", fake.url,
            "--output", str(tmp_path / "p.json"), "--prefill-sizes", "64", "--prefill-repeats", "1",
            "--decode-batches", "1",
            "--decode-contexts", "32", "--decode-tokens", "12", "--idle-seconds", "0",
            "--prefill-power-seconds", "0", "--monitor", "none", "--kv-capacity", "64000",
        ]  # fmt: skip
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "decode B=" not in proc.stdout  # no point from the failed stream
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: stream of 32 tokens at ")
    assert f"stream error: {STREAM_ERROR_MESSAGE}" in lines[0] and "see the server's log" in lines[0]

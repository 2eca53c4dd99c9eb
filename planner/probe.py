"""HTTP probes against one OpenAI-compatible vLLM server: prefill latency and decode token gaps.

Prompts follow the config-only model's word tokenizer (experiments/model_dir.py: token i is the word
`t<i>`), so a prompt of N words is N tokens there; every point records the server's own `usage`
prompt count, which stays right for any tokenizer. Each prompt starts with fresh random words, so
vLLM's prefix cache never serves a probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson

from experiments.model_dir import word_prompt

WORD_IDS = 100_000  # below the tiny model's special ids (128000+)


class ProbeError(RuntimeError):
    """The server answered something a vLLM OpenAI server would not."""


@dataclass(frozen=True)
class ServerInfo:
    model: str
    max_model_len: int | None
    vllm_version: str | None
    metrics_text: str


def random_prompt(n_tokens: int, rng: np.random.Generator) -> str:
    return word_prompt(rng.integers(0, WORD_IDS, size=n_tokens).tolist())


async def server_info(session: aiohttp.ClientSession, base: str) -> ServerInfo:
    try:
        async with session.get(f"{base}/v1/models") as resp:
            resp.raise_for_status()
            models = orjson.loads(await resp.read()).get("data") or []
    except (aiohttp.ClientError, OSError) as exc:
        raise ProbeError(f"{base}/v1/models: {exc}; is a vLLM server running there?") from None
    if not models:
        raise ProbeError(f"{base}/v1/models lists no model")
    version = None
    try:
        async with session.get(f"{base}/version") as resp:
            if resp.status == 200:
                version = orjson.loads(await resp.read()).get("version")
    except (aiohttp.ClientError, OSError, orjson.JSONDecodeError):
        pass
    metrics = ""
    try:
        async with session.get(f"{base}/metrics") as resp:
            if resp.status == 200:
                metrics = await resp.text()
    except (aiohttp.ClientError, OSError):
        pass
    first = models[0]
    return ServerInfo(str(first["id"]), first.get("max_model_len"), version, metrics)


def _body(model: str, prompt: str, max_tokens: int, stream: bool) -> bytes:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def prefill_once(
    session: aiohttp.ClientSession, base: str, model: str, n_tokens: int, rng: np.random.Generator
) -> tuple[float, int]:
    """One request alone with max_tokens=1: (seconds until the answer, prompt tokens per `usage`)."""
    data = _body(model, random_prompt(n_tokens, rng), 1, stream=False)
    t0 = time.perf_counter()
    async with session.post(
        f"{base}/v1/completions", data=data, headers={"content-type": "application/json"}
    ) as r:
        raw = await r.read()
        elapsed = time.perf_counter() - t0
        if r.status != 200:
            raise ProbeError(f"prefill of {n_tokens} tokens: HTTP {r.status}: {raw[:300]!r}")
    usage = orjson.loads(raw).get("usage") or {}
    return elapsed, int(usage.get("prompt_tokens") or n_tokens)


@dataclass
class Stream:
    """Arrival time (perf_counter s) of every chunk that carried text, and the usage prompt count."""

    chunks: list[float]
    prompt_tokens: int | None = None


async def stream_once(
    session: aiohttp.ClientSession,
    base: str,
    model: str,
    n_tokens: int,
    max_tokens: int,
    rng: np.random.Generator,
    on_first: Callable[[], None] | None = None,
) -> Stream:
    data = _body(model, random_prompt(n_tokens, rng), max_tokens, stream=True)
    out = Stream([])
    async with session.post(
        f"{base}/v1/completions", data=data, headers={"content-type": "application/json"}
    ) as r:
        if r.status != 200:
            raise ProbeError(f"stream of {n_tokens} tokens: HTTP {r.status}: {(await r.read())[:300]!r}")
        async for line in r.content:
            now = time.perf_counter()
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            event = orjson.loads(line[6:])
            if event.get("usage"):
                out.prompt_tokens = event["usage"].get("prompt_tokens")
            choices = event.get("choices") or []
            if choices and choices[0].get("text"):
                out.chunks.append(now)
                if len(out.chunks) == 1 and on_first:
                    on_first()
    return out


async def decode_batch(
    session: aiohttp.ClientSession,
    base: str,
    model: str,
    batch: int,
    n_tokens: int,
    max_tokens: int,
    rng: np.random.Generator,
    during: Callable[[asyncio.Event, asyncio.Event], Awaitable[None]] | None = None,
) -> list[Stream]:
    """`batch` streams at once. `during(all_started, first_ended)` runs beside them (a power window)."""
    all_started, first_ended = asyncio.Event(), asyncio.Event()
    started = 0

    def on_first() -> None:
        nonlocal started
        started += 1
        if started == batch:
            all_started.set()

    async def one() -> Stream:
        try:
            return await stream_once(session, base, model, n_tokens, max_tokens, rng, on_first)
        finally:
            first_ended.set()

    tasks = [asyncio.ensure_future(one()) for _ in range(batch)]
    side = asyncio.ensure_future(during(all_started, first_ended)) if during else None
    try:
        streams = await asyncio.gather(*tasks)
    finally:
        all_started.set()  # a failed stream must not leave the side task waiting
        if side:
            await side
    return list(streams)


def steady_gaps(streams: list[Stream], prompt_tokens: int) -> tuple[float, float, int]:
    """Decode step from concurrent streams: (median gap s, mean context per sequence, gaps used).

    Only gaps whose both ends lie after every stream's first token and before any stream's last
    token count: then all `batch` sequences are decoding and no prefill shares the steps. The context
    of a gap ending at chunk k is prompt + k tokens.
    """
    if not streams or any(len(s.chunks) < 2 for s in streams):
        raise ProbeError("a decode stream returned fewer than 2 tokens; raise --decode-tokens")
    start = max(s.chunks[0] for s in streams)
    end = min(s.chunks[-1] for s in streams)
    gaps, contexts = [], []
    for s in streams:
        for k in range(1, len(s.chunks)):
            if s.chunks[k - 1] >= start and s.chunks[k] <= end:
                gaps.append(s.chunks[k] - s.chunks[k - 1])
                contexts.append(prompt_tokens + k)
    if not gaps:
        raise ProbeError(
            f"no token gap with all {len(streams)} streams decoding; raise --decode-tokens so that the "
            "streams overlap after their prefills"
        )
    return float(np.median(gaps)), float(np.mean(contexts)), len(gaps)


def tokens_to_overlap(streams: list[Stream], max_tokens: int) -> int | None:
    """Tokens per stream that would make every stream decode at once (1.5x margin); None if unknown.

    When the last stream's first token comes after the first stream's last one, the batch's prefills
    outlasted the shortest stream: lengthen the streams by that span in mean chunk gaps.
    """
    if not streams or any(len(s.chunks) < 2 for s in streams):
        return None
    shortfall = max(s.chunks[0] for s in streams) - min(s.chunks[-1] for s in streams)
    # mean gap per stream: chunks that arrive coalesced (a CPU server) make the median gap ~0
    gap = float(np.mean([(s.chunks[-1] - s.chunks[0]) / (len(s.chunks) - 1) for s in streams]))
    if gap <= 0:
        return None
    return int(1.5 * (max_tokens + max(shortfall, 0.0) / gap)) + 32

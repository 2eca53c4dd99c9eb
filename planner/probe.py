"""HTTP probes against one OpenAI-compatible vLLM server: prefill latency and decode token gaps.

Every probe request is the runner's streamed request (experiments.client.send_request), so a failure
(an HTTP error, an error event in the stream, a stream cut short) is a `ProbeError`, never a point.
Prompts are random words `t<i>` (experiments.workloads.random_prompt with a `WordCounter`): N words are
N tokens on the config-only model's word tokenizer (experiments/model_dir.py); every point records the
server's own `usage` prompt count, which stays right for any tokenizer. Each prompt starts with fresh
random words, so vLLM's prefix cache never serves a probe.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson

from experiments.client import NO_TEXT, ClientConfig, OnRecord, send_request
from experiments.schema import Record
from experiments.workloads import RequestSpec, WordCounter, random_prompt

_WORDS = WordCounter()


class ProbeError(RuntimeError):
    """The server answered something a vLLM OpenAI server would not, or failed a probe request."""


@dataclass(frozen=True)
class ServerInfo:
    model: str
    max_model_len: int | None
    vllm_version: str | None
    metrics_text: str


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


def _failed(what: str, cfg: ClientConfig, record: Record) -> ProbeError:
    return ProbeError(f"{what} at {cfg.url} failed: {record.error}; see the server's log")


def _spec(n_tokens: int, max_tokens: int, rng: np.random.Generator) -> RequestSpec:
    return RequestSpec(0, random_prompt(_WORDS, n_tokens, rng), n_tokens, max_tokens)


async def prefill_once(
    session: aiohttp.ClientSession, cfg: ClientConfig, n_tokens: int, rng: np.random.Generator
) -> tuple[float, int]:
    """One request alone with max_tokens=1: (seconds until the whole answer, prompt tokens per `usage`).

    Its one token may carry no text (a special token of a dummy-weight model): such a stream ended well
    and the prefill was timed, so it counts; every other failure is a ProbeError.
    """
    rec = await send_request(session, _spec(n_tokens, 1, rng), cfg)
    if (not rec.ok and rec.error != NO_TEXT) or rec.sent_mono_ns is None or rec.end_mono_ns is None:
        raise _failed(f"prefill of {n_tokens} tokens", cfg, rec)
    return (rec.end_mono_ns - rec.sent_mono_ns) / 1e9, rec.prompt_tokens or n_tokens


@dataclass
class Stream:
    """Arrival time (monotonic s) of every chunk that carried text, and the usage prompt count."""

    chunks: list[float]
    prompt_tokens: int | None = None


def _stream_of(record: Record) -> Stream:
    """The decode view of one successful streamed request."""
    return Stream([ns / 1e9 for ns in record.chunk_mono_ns], record.prompt_tokens)


async def stream_once(
    session: aiohttp.ClientSession,
    cfg: ClientConfig,
    n_tokens: int,
    max_tokens: int,
    rng: np.random.Generator,
    on_first_token: OnRecord | None = None,
) -> Stream:
    """One streamed request (`on_first_token` as in send_request); a failed one is a ProbeError."""
    rec = await send_request(session, _spec(n_tokens, max_tokens, rng), cfg, on_first_token=on_first_token)
    if not rec.ok:
        raise _failed(f"stream of {n_tokens} tokens", cfg, rec)
    return _stream_of(rec)


async def decode_batch(
    session: aiohttp.ClientSession,
    cfg: ClientConfig,
    batch: int,
    n_tokens: int,
    max_tokens: int,
    rng: np.random.Generator,
    during: Callable[[asyncio.Event, asyncio.Event], Awaitable[None]] | None = None,
) -> list[Stream]:
    """`batch` streams at once. `during(all_started, first_ended)` runs beside them (a power window).

    One failed stream fails the batch (ProbeError): the others are cancelled.
    """
    all_started, first_ended = asyncio.Event(), asyncio.Event()
    started = 0

    def on_first(_: Record) -> None:
        nonlocal started
        started += 1
        if started == batch:
            all_started.set()

    async def one() -> Stream:
        try:
            return await stream_once(session, cfg, n_tokens, max_tokens, rng, on_first)
        finally:
            first_ended.set()

    tasks = [asyncio.ensure_future(one()) for _ in range(batch)]
    side = asyncio.ensure_future(during(all_started, first_ended)) if during else None
    try:
        streams = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        all_started.set()  # a failed stream must not leave the side task waiting
        if side:
            await side
    return list(streams)


def steady_gaps(streams: list[Stream], prompt_tokens: int) -> tuple[float, float, int]:
    """Decode step from concurrent streams: (median gap per token s, mean context per sequence, gaps used).

    Only gaps whose both ends lie after every stream's first token and before any stream's last
    token count: then all `batch` sequences are decoding and no prefill shares the steps. The context
    of a gap ending at chunk k is prompt + k tokens. Chunks that came in one network read share its
    arrival time (experiments.client): a read that brought m chunks a gap dt after the previous read
    stands for m gaps of dt / m, so a client reading several steps at once (a busy CPU server, many
    streams) neither adds gaps of 0 nor hides steps.
    """
    if not streams or any(len(s.chunks) < 2 for s in streams):
        raise ProbeError("a decode stream returned fewer than 2 tokens; raise --decode-tokens")
    start = max(s.chunks[0] for s in streams)
    end = min(s.chunks[-1] for s in streams)
    gaps: list[float] = []
    contexts: list[int] = []
    for s in streams:
        reads: list[tuple[float, int, int]] = []  # (arrival, index of its first chunk, chunks)
        for t, same in itertools.groupby(s.chunks):
            first = reads[-1][1] + reads[-1][2] if reads else 0
            reads.append((t, first, len(list(same))))
        for (before, _, _), (t, k, m) in itertools.pairwise(reads):
            if before >= start and t <= end:
                gaps += [(t - before) / m] * m
                contexts += range(prompt_tokens + k, prompt_tokens + k + m)
    if not gaps:
        raise ProbeError(
            f"no token gap with all {len(streams)} streams decoding; raise --decode-tokens so that the "
            "streams overlap after their prefills"
        )
    return float(np.median(gaps)), float(np.mean(contexts)), len(gaps)


def tokens_to_overlap(streams: list[Stream], max_tokens: int) -> int | None:
    """Tokens per stream that would make every stream decode at once (1.5x margin); None if unknown.

    When the last stream's first token comes after the first stream's last one, the batch's prefills
    outlasted the shortest stream: lengthen the streams by that span in mean chunk gaps. When a stream's
    chunks all came in one network read (a fast model on a busy CPU host: the whole answer was out before
    the client read), no gap is known: streams 4x as long give the client reads to tell steps apart.
    """
    if not streams or any(len(s.chunks) < 2 for s in streams):
        return None
    if any(s.chunks[0] == s.chunks[-1] for s in streams):
        return 4 * max_tokens
    shortfall = max(s.chunks[0] for s in streams) - min(s.chunks[-1] for s in streams)
    # mean gap per stream: chunks that arrive coalesced (a CPU server) make the median gap ~0
    gap = float(np.mean([(s.chunks[-1] - s.chunks[0]) / (len(s.chunks) - 1) for s in streams]))
    return int(1.5 * (max_tokens + max(shortfall, 0.0) / gap)) + 32

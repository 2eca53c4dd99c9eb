"""Streaming pass-through: same events, same boundaries, timing comment before [DONE]; timing header."""

from __future__ import annotations

import orjson
import pytest

from fake_upstream import FakeBehavior, FakeUpstream
from proxy.timing import TIMING_HEADER, parse_timing_comment
from tests.proxy.harness import chat_body, completion_body, proxy_with, run

TIMING_KEYS = {
    "request_id", "connector", "prefill_url", "decode_url", "prefill_ms", "decode_first_chunk_ms",
    "decode_total_ms", "proxy_overhead_ms", "t_recv_mono_ns", "t_recv_epoch_ns", "t_prefill_start_mono_ns",
    "t_prefill_end_mono_ns", "t_decode_send_mono_ns", "t_decode_first_chunk_mono_ns", "t_decode_end_mono_ns",
    "t_decode_end_epoch_ns",
}  # fmt: skip


def expected_events(fake: FakeUpstream, path: str, body: dict, request_id: str) -> list[bytes]:
    return fake.stream_events(path, body, "cmpl-" + request_id)


def check_timing(timing: dict, h_prefill: str | None, h_decode: str, connector: str) -> None:
    assert set(timing) >= TIMING_KEYS
    assert timing["connector"] == connector
    assert timing["prefill_url"] == h_prefill and timing["decode_url"] == h_decode
    order = [
        "t_recv_mono_ns",
        "t_decode_send_mono_ns",
        "t_decode_first_chunk_mono_ns",
        "t_decode_end_mono_ns",
    ]
    if h_prefill is not None:
        order[1:1] = ["t_prefill_start_mono_ns", "t_prefill_end_mono_ns"]
        assert timing["prefill_ms"] >= 0
    stamps = [timing[k] for k in order]
    assert stamps == sorted(stamps)
    assert timing["t_decode_end_epoch_ns"] - timing["t_recv_epoch_ns"] == stamps[-1] - stamps[0]
    assert 0 <= timing["proxy_overhead_ms"] <= (stamps[-2] - stamps[0]) / 1e6
    assert timing["decode_total_ms"] >= timing["decode_first_chunk_ms"] >= 0


@pytest.mark.parametrize(
    "behavior",
    [
        FakeBehavior(chunks=12),
        FakeBehavior(chunks=9, coalesce_pairs=True),  # two events per upstream write: still one chunk each
        FakeBehavior(chunks=3, text_bytes=300_000),  # events larger than socket reads
        FakeBehavior(chunks=5, chunk_interval_s=0.01),
        FakeBehavior(chunks=3, fragment_bytes=7, chunk_interval_s=0.001),  # events cut across reads
    ],
    ids=["plain", "coalesced", "large", "paced", "fragmented"],
)
@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_stream_events_and_boundaries_are_preserved(behavior: FakeBehavior, path: str) -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[behavior]) as h:
            body = (chat_body if "chat" in path else completion_body)(stream_options={"include_usage": True})
            status, chunks = await h.stream(path, body, {"X-Request-Id": "abc-1"})
            assert status == 200
            events = expected_events(h.decode[0], path, body, "abc-1")
            # every HTTP chunk is exactly one upstream SSE event, in order, then timing, then [DONE]
            assert chunks[:-2] == events
            assert chunks[-1] == b"data: [DONE]\n\n"
            timing = parse_timing_comment(chunks[-2])
            check_timing(timing, h.prefill[0].url, h.decode[0].url, "example")
            assert timing["request_id"] == "abc-1" and timing["stream"] is True
            assert timing["chunks"] == len(events) and timing["error"] is None

    run(scenario())


def test_stream_without_done_gets_the_timing_at_the_end() -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(chunks=3, send_done=False)]) as h:
            status, chunks = await h.stream("/v1/completions", completion_body())
            assert status == 200
            assert len(chunks) == 4
            assert parse_timing_comment(chunks[-1])["chunks"] == 3

    run(scenario())


@pytest.mark.parametrize("connector", ["example", "passthrough"])
def test_non_streaming_returns_decode_json_and_timing_header(connector: str) -> None:
    async def scenario() -> None:
        prefill = [] if connector == "passthrough" else None
        async with proxy_with(connector, prefill=prefill) as h:
            body = completion_body(stream=False, max_tokens=6)
            status, headers, raw = await h.post("/v1/completions", body)
            assert status == 200
            rid = headers["x-request-id"]
            assert raw == orjson.dumps(h.decode[0].whole_answer("/v1/completions", body, "cmpl-" + rid))
            timing = orjson.loads(headers[TIMING_HEADER])
            check_timing(timing, h.prefill[0].url if h.prefill else None, h.decode[0].url, connector)
            assert timing["request_id"] == rid and timing["stream"] is False

    run(scenario())

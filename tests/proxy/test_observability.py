"""Prometheus metrics, the JSONL stage log, /v1/models and /instances."""

from __future__ import annotations

import orjson

from fake_upstream import FakeBehavior
from tests.proxy.harness import chat_body, completion_body, proxy_with, run


def test_metrics_count_stages_requests_and_errors() -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            for stream in (True, False):
                await h.post("/v1/completions", completion_body(stream=stream))
            await h.post("/v1/chat/completions", chat_body(stream=False))
            await h.post("/v1/completions", b"{")
            async with h.session.get(h.url + "/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                lines = set((await resp.text()).splitlines())
        for name in (
            "proxy_prefill_leg_seconds",
            "proxy_decode_first_chunk_seconds",
            "proxy_decode_total_seconds",
            "proxy_overhead_seconds",
        ):
            assert f"{name}_count 3.0" in lines, name
        assert 'proxy_requests_total{endpoint="/v1/completions"} 3.0' in lines
        assert 'proxy_requests_total{endpoint="/v1/chat/completions"} 1.0' in lines
        assert 'proxy_errors_total{leg="request"} 1.0' in lines
        assert 'proxy_errors_total{leg="decode"} 0.0' in lines
        assert "proxy_requests_in_flight 0.0" in lines

    run(scenario())


def test_stage_log_has_one_json_line_per_request(tmp_path) -> None:
    log = tmp_path / "stages.jsonl"

    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(chunks=3)], stage_log=log) as h:
            await h.stream("/v1/completions", completion_body(), {"X-Request-Id": "s-1"})
            await h.post("/v1/completions", completion_body(stream=False), {"X-Request-Id": "s-2"})
            await h.post("/v1/completions", {"model": "m"}, {"X-Request-Id": "s-3"})
            assert len(log.read_bytes().splitlines()) == 3  # flushed per line, while serving

    run(scenario())
    records = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert [r["request_id"] for r in records] == ["s-1", "s-2", None]
    assert [r["status"] for r in records] == [200, 200, 400]
    assert records[0]["stream"] is True and records[0]["chunks"] == 3 and records[0]["error"] is None
    assert records[2]["error"] == "missing required field 'prompt'"
    for r in records[:2]:
        assert r["t_decode_end_mono_ns"] >= r["t_decode_send_mono_ns"] >= r["t_prefill_end_mono_ns"]
        assert r["prefill_ms"] is not None and r["proxy_overhead_ms"] is not None


def test_models_come_from_a_decode_instance() -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            status, body = await h.get_json("/v1/models")
            assert status == 200 and body["data"][0]["id"] == "fake-model"

    run(scenario())


def test_instances_lists_pools_with_load() -> None:
    async def scenario() -> None:
        async with proxy_with(
            "example", decode=[FakeBehavior(), FakeBehavior()], decode_select="least_outstanding"
        ) as h:
            await h.post("/v1/completions", completion_body(stream=False))
            status, body = await h.get_json("/instances")
            assert status == 200 and body["connector"] == "example"
            assert [i["url"] for i in body["decode"]] == [d.url for d in h.decode]
            assert [i["served"] for i in body["decode"]] == [1, 0]
            assert body["prefill"][0]["outstanding"] == 0 and body["prefill"][0]["source"] == "static"

    run(scenario())

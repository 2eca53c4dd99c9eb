"""Per-request policies (split/local/threshold/load) and prefix instance choice, over HTTP with fakes.

Prompts are token-id lists, so the proxy's count is their length (no tokenizer, no estimate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from experiments.client import ClientConfig, make_session, new_record, send_request
from experiments.metrics import stage_summary
from experiments.serving_setup import describe
from experiments.workloads import RequestSpec
from fake_upstream import FakeBehavior
from proxy.policy import PromptCounter, prompt_text
from proxy.prefix import BLOCK_CHARS, PrefixIndex, block_keys
from proxy.timing import parse_timing_comment
from tests.conftest import free_port
from tests.proxy.harness import metric, proxy_with, run, under_policy
from tests.proxy.test_cli import proxy_cli
from tests.waiting import wait_for_async

KV_HANDLE = {"remote_engine_id": "e1", "remote_block_ids": [1], "remote_host": "127.0.0.1", "remote_port": 9}


def ids(n: int, start: int = 1000) -> list[int]:
    return list(range(start, start + n))


def body(prompt: Any, stream: bool = False, max_tokens: int = 3) -> dict[str, Any]:
    return {"model": "fake-model", "prompt": prompt, "max_tokens": max_tokens, "stream": stream}


async def timing_of(h, prompt: Any) -> dict[str, Any]:
    status, headers, _ = await h.post("/v1/completions", body(prompt))
    assert status == 200
    return orjson.loads(headers["x-proxy-timing"])


# -------------------------------------- prompt counting (the rule itself: tests/testbed/test_route_rule.py)


def test_prompt_counting_and_text() -> None:
    counter = PromptCounter()
    assert counter.count(ids(37)) == 37
    assert counter.count("x" * 9) == 3  # ceil(9 / 4), llm-d's estimate
    assert prompt_text({"prompt": ids(3)}) == ids(3)
    chat = {"messages": [{"role": "user", "content": "ab"}, {"role": "user", "content": [{"text": "cd"}]}]}
    assert prompt_text(chat) == "ab\ncd"


def test_prefix_index_scores_the_leading_blocks_sent_to_each_instance() -> None:
    a = "a" * BLOCK_CHARS
    b = "b" * BLOCK_CHARS
    index = PrefixIndex(capacity=10)
    index.add(block_keys(a + b + "tail"), "u1")  # two whole blocks; the tail is not a block
    assert len(block_keys(a + b + "tail")) == 2
    assert index.matched_blocks(block_keys(a + b), "u1") == 2
    assert index.matched_blocks(block_keys(a + a), "u1") == 1  # diverges at the second block
    assert index.matched_blocks(block_keys(b + b), "u1") == 0  # a block matches only after its prefix
    assert index.matched_blocks(block_keys(a), "u2") == 0
    index.forget("u1")
    assert len(index) == 0


# ------------------------------------------------------------------------------------ paths over HTTP


def test_threshold_routes_by_prompt_length_and_records_the_path() -> None:
    async def scenario() -> None:
        async with proxy_with("example", policy="threshold:50") as h:
            short = await timing_of(h, ids(49))
            long = await timing_of(h, ids(50))
            assert (short["path"], short["prefill_url"], short["prefill_ms"]) == ("local", None, None)
            assert short["decode_url"] == h.decode[0].url and short["prompt_tokens_counted"] == 49
            assert (long["path"], long["prefill_url"]) == ("split", h.prefill[0].url)
            assert long["policy"] == "threshold:50" and long["prompt_tokens_counted"] == 50
            assert [b["prompt"] for b in h.prefill[0].bodies] == [ids(50)]  # P saw the long one only
            assert [b["max_tokens"] for b in h.decode[0].bodies] == [3, 3]
            assert await metric(h, 'proxy_requests_by_path_total{path="local"}') == 1
            assert await metric(h, 'proxy_requests_by_path_total{path="split"}') == 1

    run(scenario())


def test_local_leaves_prefill_untouched_and_streams_the_timing() -> None:
    async def scenario() -> None:
        async with proxy_with("example", policy="local") as h:
            status, chunks = await h.stream("/v1/completions", body(ids(300), stream=True))
            assert status == 200
            timing = parse_timing_comment(chunks[-2])
            assert timing["path"] == "local" and timing["prefill_url"] is None
            assert timing["prompt_tokens_counted"] is None  # local does not need the count
            assert h.prefill[0].requests == 0
            _, setup = await h.get_json("/setup")
            assert setup["proxy"]["policy"] == "local"

    run(scenario())


def test_nixl_local_request_carries_no_kv_params_and_split_does() -> None:
    async def scenario() -> None:
        prefill = [FakeBehavior(kv_transfer_params=KV_HANDLE)]
        async with proxy_with("nixl", prefill=prefill, policy="threshold:10") as h:
            assert (await timing_of(h, ids(5)))["path"] == "local"
            assert (await timing_of(h, ids(10)))["path"] == "split"
            local, split = h.decode[0].bodies
            assert "kv_transfer_params" not in local
            assert split["kv_transfer_params"] == KV_HANDLE

    run(scenario())


def test_load_goes_local_only_while_prefill_is_backed_up_and_decode_has_room() -> None:
    async def scenario() -> None:
        slow_prefill = [FakeBehavior(delay_s=1.0)]
        async with proxy_with("example", prefill=slow_prefill, policy="load:100:32") as h:
            p = h.state.prefill_pool.instances()[0]
            first = asyncio.create_task(timing_of(h, ids(60)))
            await wait_for_async(lambda: h.prefill[0].requests == 1, "the first prefill leg")
            assert p.prefill_tokens == 60
            second = asyncio.create_task(timing_of(h, ids(60)))  # 60 in flight < 100: split
            await wait_for_async(lambda: h.prefill[0].requests == 2, "the second prefill leg")
            assert p.prefill_tokens == 120
            third = await timing_of(h, ids(60))  # 120 >= 100 and D has 2 < 32: local
            assert third["path"] == "local"
            assert [(await t)["path"] for t in (first, second)] == ["split", "split"]
            assert p.prefill_tokens == 0 and p.outstanding == 0
            assert (await timing_of(h, ids(60)))["path"] == "split"  # the backlog is gone

    run(scenario())


def test_load_keeps_splitting_when_decode_is_full() -> None:
    async def scenario() -> None:
        slow_decode = [FakeBehavior(delay_s=1.0)]
        async with proxy_with("example", decode=slow_decode, policy="load:0:1") as h:
            first = asyncio.create_task(timing_of(h, ids(8)))  # P idle counts as backed up at 0
            await wait_for_async(lambda: h.decode[0].requests == 1, "the first decode leg")
            second = await timing_of(h, ids(8))  # D has 1 outstanding, not < 1: split
            assert ((await first)["path"], second["path"]) == ("local", "split")

    run(scenario())


@pytest.mark.parametrize("role", ["prefill", "decode"])
def test_prefix_choice_sends_repeats_where_their_prefix_went(role: str) -> None:
    async def scenario() -> None:
        policy = "split" if role == "prefill" else "local"
        select = {f"{role}_select": "prefix"}
        two = [FakeBehavior(), FakeBehavior()]
        async with proxy_with("example", **{role: two}, policy=policy, **select) as h:
            a = "a " * BLOCK_CHARS  # two blocks each, different from the first block on
            b = "b " * BLOCK_CHARS
            where = [(await timing_of(h, p))[f"{role}_url"] for p in (a, b, a + "x", b + "y", a, b)]
            assert where[0] != where[1]  # fresh prefixes spread (round robin on ties)
            assert where[2] == where[4] == where[0] and where[3] == where[5] == where[1]

    run(scenario())


def test_prefix_ties_go_to_the_least_outstanding() -> None:
    async def scenario() -> None:
        two = [FakeBehavior(delay_s=1.0), FakeBehavior()]
        async with proxy_with("example", decode=two, policy="local", decode_select="prefix") as h:
            busy = asyncio.create_task(timing_of(h, ids(4)))
            await wait_for_async(lambda: h.decode[0].requests == 1, "the slow request")
            assert all([(await timing_of(h, ids(4, s)))["decode_url"] == h.decode[1].url for s in (1, 2)])
            await busy

    run(scenario())


# -------------------------------------------------- faults on the local path: never lost, never hung

LOCAL_POLICIES = ("local", "threshold:1000000", "load:0:1000")


@pytest.fixture(params=LOCAL_POLICIES)
def local_policy(request: pytest.FixtureRequest) -> Iterator[str]:
    with under_policy(request.param):
        yield request.param


async def _settled(h) -> None:
    """Nothing in flight, nothing held, no prefill tokens counted, P never asked."""
    await wait_for_async(
        lambda: all(i.outstanding == 0 for p in h.state.pools() for i in p.instances()), "release"
    )
    assert await metric(h, "proxy_requests_in_flight") == 0
    assert all(i.prefill_tokens == 0 for i in h.state.prefill_pool.instances())
    assert all(p.requests == 0 for p in h.prefill)


@pytest.mark.parametrize("stream", [True, False])
def test_local_decode_http_error_is_502(local_policy: str, stream: bool) -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(status=503)]) as h:
            status, headers, raw = await h.post("/v1/completions", body(ids(4), stream=stream))
            assert status == 502 and headers["x-proxy-error-leg"] == "decode"
            assert orjson.loads(raw)["error"]["message"].startswith(f"decode leg to {h.decode[0].url}")
            await _settled(h)

    run(scenario())


def test_local_dead_decode_is_retried_on_another(local_policy: str) -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with proxy_with("example", decode=[dead, FakeBehavior()], eject_s=0.2) as h:
            statuses = [(await h.post("/v1/completions", body(ids(4))))[0] for _ in range(4)]
            assert statuses == [200] * 4
            await _settled(h)

    run(scenario())


def test_local_decode_down_alone_is_a_fast_503(local_policy: str) -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with proxy_with("example", decode=[dead]) as h:
            status, headers, _ = await h.post("/v1/completions", body(ids(4)))
            assert status == 503 and headers["x-proxy-error-leg"] == "decode"
            await _settled(h)

    run(scenario())


@pytest.mark.parametrize("fault", ["drop", "stall"])
def test_local_stream_dying_or_stalling_ends_with_an_error_event(local_policy: str, fault: str) -> None:
    async def scenario() -> None:
        bad = FakeBehavior(chunks=6, fault=fault, fault_after=2, stall_s=20)
        async with proxy_with("example", decode=[bad], decode_chunk_timeout_s=0.3) as h:
            status, chunks = await h.stream("/v1/completions", body(ids(4), stream=True, max_tokens=6))
            assert status == 200
            err = orjson.loads(chunks[2][len(b"data: ") :])["error"]
            assert err["leg"] == "decode" and "mid-stream" in err["message"]
            timing = parse_timing_comment(chunks[3])
            assert timing["path"] == "local" and timing["error"] == err["message"]
            await _settled(h)

    run(scenario())


def test_local_client_disconnect_cancels_the_decode_request(local_policy: str) -> None:
    async def scenario() -> None:
        slow = FakeBehavior(chunks=2000, chunk_interval_s=0.01)
        async with proxy_with("example", decode=[slow]) as h:
            async with aiohttp.ClientSession() as client:
                resp = await client.post(h.url + "/v1/completions", json=body(ids(4), stream=True))
                assert resp.status == 200
                await resp.content.readuntil(b"\n\n")
                resp.close()
            await asyncio.wait_for(h.decode[0].disconnected.wait(), 10)
            await _settled(h)

    run(scenario())


def test_load_split_faults_release_the_prefill_tokens() -> None:
    async def scenario() -> None:
        async with proxy_with("example", prefill=[FakeBehavior(status=500)], policy="load") as h:
            status, headers, _ = await h.post("/v1/completions", body(ids(40)))
            assert status == 502 and headers["x-proxy-error-leg"] == "prefill"
            assert [i.prefill_tokens for i in h.state.prefill_pool.instances()] == [0]
            assert await metric(h, "proxy_requests_in_flight") == 0

    run(scenario())


# ------------------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "sometimes"], "error: unknown policy 'sometimes'"),
        (["--policy", "threshold:-3"], "error: threshold:N must be a whole number >= 0, got '-3'; use split"),
        (["--policy", "local", "--connector", "p2p_nccl"], "error: --policy local needs decode instances"),
        (["--policy", "threshold:8", "--tokenizer", "/no/such/model"], "error: --tokenizer /no/such/model"),
    ],
)
def test_policy_errors_are_one_line(args: list[str], message: str) -> None:
    urls = [
        "--prefill",
        "http://127.0.0.1:1@127.0.0.1:21001",
        "--decode",
        "http://127.0.0.1:2@127.0.0.1:22001",
    ]
    connector = [] if "--connector" in args else ["--connector", "example"]
    result = proxy_cli(*connector, *urls, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_a_run_without_a_launch_plan_reads_the_policy_from_the_proxys_setup(tmp_path) -> None:
    async def scenario() -> None:
        async with proxy_with("example", policy="threshold:64") as h:
            setup = await asyncio.to_thread(describe, h.url, tmp_path / "no-launch.json")
            assert setup.source == "proxy /setup" and setup.policy == "threshold:64"

    run(scenario())


def test_the_streaming_client_keeps_each_requests_path_in_its_record() -> None:
    """The real client through the real proxy: the `: proxy-timing` comment becomes StageTimes with the
    policy, the path and the counted prompt (the schema keeps them)."""

    async def scenario() -> None:
        async with proxy_with("example", policy="threshold:30") as h:
            cfg = ClientConfig(endpoint=h.url, model="fake-model")
            specs = [RequestSpec(index=i, prompt="x" * chars, input_tokens=0, output_tokens=3)
                     for i, chars in enumerate((100, 120))]  # fmt: skip
            async with make_session(cfg) as session:
                recs = [await send_request(session, s, cfg, new_record(s, False, None)) for s in specs]
            assert [r.ok for r in recs] == [True, True]
            stages = [r.stages for r in recs]
            assert all(s is not None and s.policy == "threshold:30" for s in stages)
            # ceil(100 / 4) = 25 < 30: local; ceil(120 / 4) = 30: split
            assert [(s.path, s.prompt_tokens_counted) for s in stages if s] == [("local", 25), ("split", 30)]
            summary = stage_summary(recs)
            assert summary is not None and {p: x.count for p, x in summary.paths.items()} == {
                "local": 1,
                "split": 1,
            }

    run(scenario())

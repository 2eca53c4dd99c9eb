"""Passive health: a faulty instance leaves rotation, its /health brings it back; one retry per request."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fake_upstream import FakeBehavior, FakeUpstream
from proxy.connectors.p2p_nccl import parse_request_id
from tests.conftest import free_port
from tests.proxy.harness import (
    SPLITTING_POLICIES,
    completion_body,
    proxy_with,
    run,
    under_policy,
)
from tests.waiting import wait_for_async

KV_HANDLE = {
    "remote_engine_id": "e1",
    "remote_block_ids": [1, 2],
    "remote_host": "127.0.0.1",
    "remote_port": 9,
}
FAST = {"eject_s": 0.2, "probe_interval_s": 0.05}


@pytest.fixture(autouse=True, params=SPLITTING_POLICIES)
def policy(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs under each policy that splits its requests (tests/proxy/harness.py)."""
    with under_policy(request.param):
        yield request.param


async def metrics_text(h) -> str:
    async with h.session.get(h.url + "/metrics") as resp:
        return await resp.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


async def instance(h, role: str, url: str) -> dict:
    _, body = await h.get_json("/instances")
    (found,) = [i for i in body[role] if i["url"] == url]
    return found


@pytest.mark.parametrize("stream", [True, False])
def test_passthrough_with_a_dead_backend_never_fails_and_shows_who_is_out(stream: bool) -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with proxy_with("passthrough", prefill=[], decode=[dead, FakeBehavior()]) as h:
            statuses = [
                (await h.post("/v1/completions", completion_body(stream=stream)))[0] for _ in range(6)
            ]
            assert statuses == [200] * 6  # not 200 503 200 503 ...
            assert len(h.decode[0].received) == 6
            out = await instance(h, "backend", dead)
            assert out["in_rotation"] is False and out["out_cause"] == "unreachable"
            assert f"decode instance {dead} is unreachable" in out["out_reason"]  # passthrough's one leg
            assert out["ejections"] == 1 and out["outstanding"] == 0
            text = await metrics_text(h)
            assert sample(text, "proxy_instance_in_rotation", role="backend", instance=dead) == 0
            alive = h.decode[0].url
            assert sample(text, "proxy_instance_in_rotation", role="backend", instance=alive) == 1
            assert sample(text, "proxy_instance_out", role="backend", instance=dead, cause="unreachable") == 1
            assert (
                sample(text, "proxy_instance_out", role="backend", instance=alive, cause="unreachable")
                is None
            )
            assert sample(text, "proxy_retries_total", leg="decode") == 1  # only the first request met it
            labels = {"role": "backend", "instance": dead, "cause": "unreachable"}
            assert sample(text, "proxy_instance_ejections_total", **labels) == 1
            assert sample(text, "proxy_errors_total", leg="decode") == 0

    run(scenario())


@pytest.mark.parametrize("stream", [True, False])
def test_with_retries_off_a_fault_fails_its_request_and_still_takes_the_instance_out(stream: bool) -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with proxy_with("passthrough", prefill=[], decode=[dead, FakeBehavior()], retries=0) as h:
            status, headers, raw = await h.post("/v1/completions", completion_body(stream=stream))
            err = orjson.loads(raw)["error"]
            assert (status, err["instance"], headers["x-proxy-error-leg"]) == (503, dead, "decode")
            assert f"decode instance {dead} is unreachable" in err["message"]
            assert len(h.decode[0].received) == 0  # not sent again
            assert (await h.post("/v1/completions", completion_body(stream=stream)))[0] == 200
            assert len(h.decode[0].received) == 1
            assert (await instance(h, "backend", dead))["in_rotation"] is False
            text = await metrics_text(h)
            assert sample(text, "proxy_retries_total", leg="decode") == 0
            assert sample(text, "proxy_errors_total", leg="decode") == 1

    run(scenario())


def test_an_instance_comes_back_when_its_health_answers() -> None:
    async def scenario() -> None:
        port = free_port()
        comeback = FakeUpstream()
        url = f"http://127.0.0.1:{port}"
        async with proxy_with("passthrough", prefill=[], decode=[url, FakeBehavior()], **FAST) as h:
            status, _, _ = await h.post("/v1/completions", completion_body())
            assert status == 200
            assert (await instance(h, "backend", url))["in_rotation"] is False
            await wait_for_async(lambda: _last_probe_is(h, "backend", url, "unreachable"), "a failed probe")
            await comeback.start(port=port)
            try:
                await wait_for_async(lambda: _in_rotation(h, "backend", url), "re-admission")
                for _ in range(4):
                    assert (await h.post("/v1/completions", completion_body()))[0] == 200
                assert len(comeback.received) == 2  # round robin again
            finally:
                await comeback.stop()

    run(scenario())


async def _in_rotation(h, role: str, url: str) -> bool:
    return (await instance(h, role, url))["in_rotation"]


async def _last_probe_is(h, role: str, url: str, start: str) -> bool:
    """Whether the health probe has run since the instance left and found what `start` says."""
    return ((await instance(h, role, url))["last_probe"] or "").startswith(start)


def test_a_timeout_ejects_and_a_failing_health_keeps_it_out() -> None:
    async def scenario() -> None:
        hung = FakeBehavior(delay_s=5, health_status=503)
        async with proxy_with("example", prefill=[hung, FakeBehavior()], prefill_timeout_s=0.3, **FAST) as h:
            slow, good = h.prefill
            status, headers, _ = await h.post("/v1/completions", completion_body(stream=False))
            assert status == 200
            timing = orjson.loads(headers["x-proxy-timing"])
            assert timing["retries"] == 1 and timing["prefill_url"] == good.url
            out = await instance(h, "prefill", slow.url)
            assert out["out_cause"] == "timeout"
            await wait_for_async(lambda: _last_probe_is(h, "prefill", slow.url, "HTTP 503"), "a 503 probe")
            slow.behavior = dataclasses.replace(slow.behavior, health_status=200, delay_s=0)
            await wait_for_async(lambda: _in_rotation(h, "prefill", slow.url), "re-admission")

    run(scenario())


def test_xpyd_dead_prefill_and_dead_decode_are_both_routed_around() -> None:
    async def scenario() -> None:
        dead_p, dead_d = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
        async with proxy_with(
            "example", prefill=[dead_p, FakeBehavior()], decode=[FakeBehavior(), dead_d]
        ) as h:
            for _ in range(6):
                status, _, _ = await h.post("/v1/completions", completion_body())
                assert status == 200
            assert len(h.prefill[0].received) == 6 and len(h.decode[0].received) == 6
            assert (await instance(h, "prefill", dead_p))["in_rotation"] is False
            assert (await instance(h, "decode", dead_d))["in_rotation"] is False

    run(scenario())


def test_p2p_nccl_decode_retry_redoes_the_prefill_toward_the_new_decode() -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with proxy_with("p2p_nccl", decode=[dead, FakeBehavior()]) as h:
            status, _, _ = await h.post("/v1/completions", completion_body(), {"X-Request-Id": "r1"})
            assert status == 200
            first, second = h.prefill[0].received  # the KV of the first went to the dead decode instance
            assert parse_request_id(first.headers["x-request-id"])[1] == ("127.0.0.1", 22001)
            assert parse_request_id(second.headers["x-request-id"])[1] == ("127.0.0.1", 22002)
            (d_req,) = h.decode[0].received
            assert d_req.headers["x-request-id"] == second.headers["x-request-id"]

    run(scenario())


def test_nixl_decode_retry_keeps_the_prefill_and_its_kv_handle() -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        prefill = FakeBehavior(kv_transfer_params=KV_HANDLE)
        async with proxy_with("nixl", prefill=[prefill], decode=[dead, FakeBehavior()]) as h:
            status, _, _ = await h.post("/v1/completions", completion_body())
            assert status == 200
            assert len(h.prefill[0].received) == 1  # the decoder pulls: any decode instance can take it
            assert h.decode[0].received[0].body["kv_transfer_params"] == KV_HANDLE

    run(scenario())


def test_one_retry_only_then_the_error_names_the_last_instance() -> None:
    async def scenario() -> None:
        dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
        async with proxy_with("passthrough", prefill=[], decode=[*dead]) as h:
            status, _, raw = await h.post("/v1/completions", completion_body())
            err = orjson.loads(raw)["error"]
            assert status == 503 and err["instance"] in dead[1:]  # tried dead[0], retried on one other
            _, body = await h.get_json("/instances")
            tried = {dead[0], err["instance"]}
            assert {i["url"]: i["in_rotation"] for i in body["backend"]} == {u: u not in tried for u in dead}
            # every instance out but one: it is tried; when all are out, all are tried (no "no instance")
            for _ in range(2):
                status, _, raw = await h.post("/v1/completions", completion_body())
                assert status == 503 and "is unreachable" in orjson.loads(raw)["error"]["message"]

    run(scenario())


def test_no_retry_once_the_stream_started_but_the_instance_leaves_rotation() -> None:
    async def scenario() -> None:
        crash = FakeBehavior(chunks=6, fault="drop", fault_after=2)
        async with proxy_with("passthrough", prefill=[], decode=[crash, FakeBehavior()]) as h:
            status, chunks = await h.stream("/v1/completions", completion_body())
            assert status == 200 and b"mid-stream" in b"".join(chunks)
            assert len(h.decode[1].received) == 0
            out = await instance(h, "backend", h.decode[0].url)
            assert out["in_rotation"] is False and out["out_cause"] == "disconnected"
            for _ in range(2):
                assert (await h.post("/v1/completions", completion_body()))[0] == 200
            assert len(h.decode[0].received) == 1 and len(h.decode[1].received) == 2

    run(scenario())


def test_eject_time_zero_keeps_everyone_in_rotation_but_still_retries() -> None:
    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with proxy_with("passthrough", prefill=[], decode=[dead, FakeBehavior()], eject_s=0) as h:
            statuses = [(await h.post("/v1/completions", completion_body()))[0] for _ in range(4)]
            assert statuses == [200] * 4
            assert (await instance(h, "backend", dead))["in_rotation"] is True
            assert sample(await metrics_text(h), "proxy_retries_total", leg="decode") == 2

    run(scenario())

"""One warning line per failed request, naming request id, leg, instance and cause."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from fake_upstream import FakeBehavior
from tests.conftest import free_port
from tests.proxy.harness import completion_body, proxy_with, run
from tests.waiting import wait_for_async


def failure_lines(caplog: pytest.LogCaptureFixture, rid: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "proxy" and r.getMessage().startswith(f"request {rid} failed")
    ]


def test_each_failure_kind_logs_exactly_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="proxy")
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with proxy_with("example", decode=[dead]) as h:
            await h.post("/v1/completions", completion_body(), {"X-Request-Id": "down-1"})
        async with proxy_with("example") as h:
            await h.post("/v1/completions", completion_body(max_tokens=-5), {"X-Request-Id": "bad-1"})
            await h.post("/v1/completions", {"model": "m"}, {"X-Request-Id": "bad-2"})
            await h.post("/v1/completions", completion_body(), {"X-Request-Id": "ok-1"})
        async with proxy_with("example", decode=[FakeBehavior(chunks=5, fault="drop")]) as h:
            await h.stream("/v1/completions", completion_body(), {"X-Request-Id": "mid-1"})
            return h.decode[0].url

    crash_url = run(scenario())
    (down,) = failure_lines(caplog, "down-1")
    assert down.levelno == logging.WARNING
    assert down.getMessage() == (
        f"request down-1 failed: status 503, leg decode, instance {dead}: "
        f"decode instance {dead} is unreachable: Connection refused"
    )
    (bad,) = failure_lines(caplog, "bad-1")
    assert (
        "status 400, leg decode" in bad.getMessage() and "max_tokens must be at least 1" in bad.getMessage()
    )
    (mid,) = failure_lines(caplog, "mid-1")
    assert f"status 200, leg decode, instance {crash_url}:" in mid.getMessage()
    assert "(mid-stream)" in mid.getMessage()
    # a request the proxy rejects itself has no id yet: its line says why
    (own,) = [r for r in caplog.records if "missing required field 'prompt'" in r.getMessage()]
    assert own.getMessage().startswith("request - failed: status 400, leg request, instance -:")
    assert failure_lines(caplog, "ok-1") == []


def test_a_retried_request_that_succeeds_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with proxy_with("passthrough", prefill=[], decode=[dead, FakeBehavior()]) as h:
            status, _, _ = await h.post("/v1/completions", completion_body(), {"X-Request-Id": "r-1"})
            assert status == 200

    run(scenario())
    assert failure_lines(caplog, "r-1") == []
    (eject,) = [r for r in caplog.records if r.name == "proxy.health"]
    assert (
        eject.levelno == logging.WARNING
        and f"instance {dead} out of rotation (unreachable)" in eject.getMessage()
    )
    (retry,) = [r for r in caplog.records if "retrying on" in r.getMessage()]
    assert retry.levelno == logging.INFO and retry.getMessage().startswith("request r-1: ")


def test_a_client_that_goes_away_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proxy")

    async def scenario() -> None:
        async with proxy_with("example", prefill=[FakeBehavior(delay_s=20)]) as h:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as client:
                with pytest.raises(TimeoutError):
                    await client.post(
                        h.url + "/v1/completions", json=completion_body(), headers={"X-Request-Id": "gone"}
                    )
            await wait_for_async(lambda: failure_lines(caplog, "gone"), "the failure line", timeout_s=5)

    run(scenario())
    (line,) = failure_lines(caplog, "gone")
    assert line.levelno == logging.INFO and "leg client" in line.getMessage()

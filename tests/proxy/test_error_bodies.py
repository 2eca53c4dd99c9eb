"""Client errors stay client errors (a backend's 4xx passes through, leg named); every error is JSON."""

from __future__ import annotations

import orjson
import pytest

from fake_upstream import FakeBehavior
from tests.proxy.harness import chat_body, completion_body, metric, proxy_with, run


@pytest.mark.parametrize("connector", ["example", "passthrough"])
@pytest.mark.parametrize("stream", [True, False])
def test_decode_4xx_passes_through_with_status_body_and_leg(connector: str, stream: bool) -> None:
    async def scenario() -> None:
        prefill = [] if connector == "passthrough" else None
        async with proxy_with(connector, prefill=prefill) as h:
            body = completion_body(stream=stream, max_tokens=-5)
            status, headers, raw = await h.post("/v1/completions", body)
            decode = h.decode[0].url
            assert status == 400
            assert headers["content-type"].startswith("application/json")
            err = orjson.loads(raw)["error"]
            # vLLM's own error, untouched, plus the leg and instance
            assert err == {
                "message": "max_tokens must be at least 1, got -5.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
                "leg": "decode",
                "instance": decode,
            }
            assert headers["x-proxy-error-leg"] == "decode" and headers["x-proxy-error-instance"] == decode
            # not a backend fault: no retry, the instance stays in rotation
            assert len(h.decode[0].received) == 1
            _, instances = await h.get_json("/instances")
            role = "backend" if connector == "passthrough" else "decode"
            assert instances[role][0]["in_rotation"] is True
            assert await metric(h, 'proxy_errors_total{leg="decode"}') == 1

    run(scenario())


def test_prefill_4xx_passes_through_and_decode_is_not_asked() -> None:
    async def scenario() -> None:
        async with proxy_with("example", prefill=[FakeBehavior(status=422)]) as h:
            status, headers, raw = await h.post("/v1/chat/completions", chat_body())
            assert status == 422
            err = orjson.loads(raw)["error"]
            assert err["message"] == "fake failure 422" and err["type"] == "BadRequestError"
            assert err["leg"] == "prefill" and err["instance"] == h.prefill[0].url
            assert headers["x-proxy-error-leg"] == "prefill"
            assert h.decode[0].received == []

    run(scenario())


def test_a_4xx_that_is_not_json_passes_byte_for_byte() -> None:
    async def scenario() -> None:
        text = "model not found, sorry"
        async with proxy_with("example", decode=[FakeBehavior(status=404, error_text=text)]) as h:
            status, headers, raw = await h.post("/v1/completions", completion_body(stream=False))
            assert (status, raw) == (404, text.encode())
            assert headers["content-type"].startswith("text/plain")
            assert headers["x-proxy-error-leg"] == "decode"
            assert headers["x-proxy-error-instance"] == h.decode[0].url

    run(scenario())


@pytest.mark.parametrize("upstream_status", [500, 503])
def test_a_backend_5xx_is_still_a_502(upstream_status: int) -> None:
    async def scenario() -> None:
        async with proxy_with("example", decode=[FakeBehavior(status=upstream_status)]) as h:
            status, _, raw = await h.post("/v1/completions", completion_body())
            err = orjson.loads(raw)["error"]
            assert status == 502 and err["type"] == "upstream_error" and err["leg"] == "decode"

    run(scenario())


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/completions", 405, "POST"),
        ("PUT", "/v1/chat/completions", 405, "POST"),
        ("DELETE", "/v1/completions", 405, "POST"),
        ("POST", "/health", 405, "GET"),
        ("POST", "/instances", 405, "GET"),
        ("GET", "/v1/embeddings", 404, None),
        ("POST", "/v1/nope", 404, None),
        ("GET", "/", 404, None),
    ],
)
def test_unknown_paths_and_wrong_methods_answer_openai_json(
    method: str, path: str, status: int, allow: str | None
) -> None:
    async def scenario() -> None:
        async with proxy_with("example") as h:
            async with h.session.request(method, h.url + path, json={"prompt": "x"}) as resp:
                raw = await resp.read()
                assert resp.status == status
                assert resp.headers["Content-Type"].startswith("application/json")
                err = orjson.loads(raw)["error"]
                assert err["code"] == status and {"message", "type"} <= set(err)
                assert err["type"] == ("method_not_allowed" if status == 405 else "not_found_error")
                assert path in err["message"]
                if allow is not None:
                    assert allow in resp.headers["Allow"]
            assert h.prefill[0].received == [] and h.decode[0].received == []

    run(scenario())

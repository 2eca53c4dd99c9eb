"""A vLLM-like OpenAI server whose timings follow known formulas (tests of the profiler's plumbing).

Every completion first spends FRONTEND_S in its "API server", then its prefill sleeps PREFILL_S +
PER_TOKEN_S * prompt words; streams send their first token after that, then one token every STEP_S +
PER_SEQ_S * (streams open); with `first_use_s`, the first prompt of each length also pays that (vLLM
compiling a kernel at a token count's first use, as its fused-MoE kernels do); with `whole_below`, a
stream asking for fewer tokens comes in one write after its last step (a starved CPU server whose
client reads the whole answer at once: no gap to time); with `fail_above`, a stream asking for more
tokens is refused (HTTP 500); with `prompts`, every prompt is appended to that list. /metrics carries
`vllm:cache_config_info` and, like vLLM, the sums and counts of the TTFT (API server + prefill), queue
(0) and prefill histograms; /version a version.
Runs in a background thread on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from aiohttp import web

FRONTEND_S, PREFILL_S, PER_TOKEN_S = 0.004, 0.002, 2e-6
STEP_S, PER_SEQ_S = 0.002, 0.0005
MAX_MODEL_LEN = 2048
METRICS = 'vllm:cache_config_info{block_size="16",gpu_memory_utilization="0.9",num_gpu_blocks="4000"} 1.0\n'


def _app(first_use_s: float, whole_below: int, fail_above: int, prompts: list[str] | None) -> web.Application:
    open_streams = 0
    seen: set[int] = set()
    times = {"time_to_first_token": 0.0, "request_queue_time": 0.0, "request_prefill_time": 0.0}
    count = 0

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "fake-model", "max_model_len": MAX_MODEL_LEN}]})

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": "fake-0.1"})

    async def metrics(_: web.Request) -> web.Response:
        hist = "".join(
            f'vllm:{name}_seconds_sum{{engine="0"}} {total}\n'
            f'vllm:{name}_seconds_count{{engine="0"}} {count}\n'
            for name, total in times.items()
        )
        return web.Response(text=METRICS + hist)

    async def completions(request: web.Request) -> web.StreamResponse:
        nonlocal open_streams, count
        body = orjson.loads(await request.read())
        n_in = len(body["prompt"].split())
        if prompts is not None:
            prompts.append(body["prompt"])
        if n_in + body["max_tokens"] > MAX_MODEL_LEN:
            return web.json_response({"error": {"message": "too long"}}, status=400)
        if fail_above and body["max_tokens"] > fail_above:
            return web.json_response({"error": {"message": "engine dead"}}, status=500)
        prefill = PREFILL_S + PER_TOKEN_S * n_in + (first_use_s if n_in not in seen else 0.0)
        seen.add(n_in)
        await asyncio.sleep(FRONTEND_S + prefill)
        times["time_to_first_token"] += FRONTEND_S + prefill
        times["request_prefill_time"] += prefill
        count += 1
        usage = {"prompt_tokens": n_in, "completion_tokens": body["max_tokens"]}
        if not body.get("stream"):
            return web.json_response({"choices": [{"text": " t0"}], "usage": usage})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        open_streams += 1
        whole = body["max_tokens"] < whole_below
        held = b""
        try:
            for i in range(body["max_tokens"]):
                if i:
                    await asyncio.sleep(STEP_S + PER_SEQ_S * open_streams)
                event = b"data: " + orjson.dumps({"choices": [{"text": f" t{i}"}]}) + b"\n\n"
                if whole:
                    held += event
                else:
                    await resp.write(event)
            if held:
                await resp.write(held)
        finally:
            open_streams -= 1
        await resp.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/completions", completions)
    return app


@contextmanager
def fake_vllm(
    first_use_s: float = 0.0, whole_below: int = 0, fail_above: int = 0, prompts: list[str] | None = None
) -> Iterator[str]:
    """Serve on a free loopback port; yields the base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(first_use_s, whole_below, fail_above, prompts))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

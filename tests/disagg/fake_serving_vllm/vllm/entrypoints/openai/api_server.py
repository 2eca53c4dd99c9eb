"""Fake `vllm.entrypoints.openai.api_server` that serves: the shared fake upstream on --host/--port.

Put first on PYTHONPATH, the real launchers start it instead of vLLM; it answers /health, /v1/models
(with the --model path as the tokenizer's root), completions (streamed or not, as prefill legs need)
and /tokenize, until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from fake_upstream import FakeBehavior, FakeUpstream


async def serve(host: str, port: int, model: str) -> None:
    fake = FakeUpstream(FakeBehavior(chunk_interval_s=0.001), model=model, root=model, record=False)
    await fake.start(host, port)
    print(f"fake serving vllm on {host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", required=True)
    args, _ = p.parse_known_args()  # every other vLLM flag the launcher passes is accepted and ignored
    asyncio.run(serve(args.host, args.port, args.model))


if __name__ == "__main__":
    main()

"""`python -m fake_upstream`: serve one fake vLLM instance until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal

from fake_upstream.behavior import MODES, FakeBehavior, with_mode
from fake_upstream.server import FakeUpstream
from testbed.cli_errors import OneLineErrorParser


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="python -m fake_upstream", description="A fake vLLM OpenAI server.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    p.add_argument("--model", default="fake-model", help="served model name (default fake-model)")
    p.add_argument("--root", help="model path that /v1/models reports (a tokenizer directory)")
    p.add_argument("--mode", choices=MODES, default="ok", help="default answer mode (default ok)")
    p.add_argument("--chunks", type=int, help="tokens per answer (default: the request's max_tokens)")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before the response headers")
    p.add_argument("--first-token-delay", type=float, default=0.0, help="seconds before the first event")
    p.add_argument("--chunk-interval", type=float, default=0.0, help="seconds between two events")
    p.add_argument("--no-record", action="store_true", help="keep no copy of the requests (long runs)")
    return p


async def _serve(args: argparse.Namespace) -> None:
    behavior = FakeBehavior(
        chunks=args.chunks,
        delay_s=args.delay,
        first_token_delay_s=args.first_token_delay,
        chunk_interval_s=args.chunk_interval,
    )
    fake = FakeUpstream(
        with_mode(behavior, args.mode), model=args.model, root=args.root, record=not args.no_record
    )
    url = await fake.start(args.host, args.port)
    print(f"fake upstream on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main() -> None:
    asyncio.run(_serve(build_parser().parse_args()))


if __name__ == "__main__":
    main()

"""Soak: hold many concurrent streams through the real proxy for minutes; print errors and the proxy's RSS.

    nice python -m bench.soak [--streams 512] [--minutes 10] [--tokens 64] [--chunk-interval 0.05]

Starts the local fake upstream (`python -m fake_upstream`, one process playing prefill and decode) and
the proxy (`python -m proxy --connector example`, both on loopback), then keeps `--streams` streamed
completions in flight (each worker sends its next request when the last one ended) until the time is
up. Every `--sample-every` seconds it prints requests, errors, chunks/s and the proxy's RSS and open
files; at the end the errors by kind and the RSS at start (before load), after the warm-up, in the
middle and at the end, with the growth after warm-up. Exit status 1 when the target is missed
(any error or retried request, or RSS growth after warm-up of 10% or more). Requests go through the
runner's client (experiments.client.send_request), which sends a request once more when its connection
died before any answer: such retries are counted apart. A script that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from experiments.client import ClientConfig, make_session, send_request
from experiments.workloads import RequestSpec

REPO = Path(__file__).resolve().parents[1]
TARGET_GROWTH = 0.10


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_process(
    args: list[str], log: Path, pattern: str, timeout_s: float = 60
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `python -m ...` with its output in `log`; wait for the line giving its URL."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return proc, match[1]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{args[0]} did not start; see {log}:\n{log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Tally:
    ok: int = 0
    chunks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)  # what the first try died of (then sent again)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


async def one_stream(
    session: aiohttp.ClientSession, spec: RequestSpec, cfg: ClientConfig, tally: Tally
) -> None:
    rec = await send_request(session, spec, cfg)
    if rec.retry_error is not None:
        tally.retried[rec.retry_error[:160]] += 1
    if rec.ok:
        tally.ok += 1
        tally.chunks += len(rec.chunk_mono_ns)
    else:
        tally.errors[(rec.error or "unknown error")[:160]] += 1


async def worker(
    session: aiohttp.ClientSession, spec: RequestSpec, cfg: ClientConfig, deadline: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        await one_stream(session, spec, cfg, tally)


@dataclass
class Sample:
    t_s: float
    requests: int
    errors: int
    chunks: int
    rss_mib: float
    files: int


async def soak(args: argparse.Namespace, proxy_url: str, proxy_pid: int) -> tuple[Tally, list[Sample]]:
    spec = RequestSpec(0, "t1 t2 t3 t4", 4, args.tokens)
    cfg = ClientConfig(proxy_url, "soak", request_timeout_s=args.request_timeout)
    tally = Tally()
    samples = [Sample(0.0, 0, 0, 0, rss_mib(proxy_pid), open_files(proxy_pid))]
    print(
        f"{'t s':>6} {'requests':>9} {'errors':>7} {'chunks/s':>9} {'proxy RSS MiB':>14} {'open files':>10}"
    )
    print(f"{0:6.0f} {0:9d} {0:7d} {0:9.0f} {samples[0].rss_mib:14.1f} {samples[0].files:10d}", flush=True)
    start = time.monotonic()
    deadline = start + args.minutes * 60
    async with make_session(cfg) as session:
        workers = [
            asyncio.create_task(worker(session, spec, cfg, deadline, tally)) for _ in range(args.streams)
        ]
        last = samples[0]
        while not all(w.done() for w in workers):
            await asyncio.wait(workers, timeout=min(args.sample_every, max(deadline - time.monotonic(), 0.1)))
            now = time.monotonic() - start
            if now - last.t_s < args.sample_every and not all(w.done() for w in workers):
                continue
            cur = Sample(
                now,
                tally.ok + tally.failed,
                tally.failed,
                tally.chunks,
                rss_mib(proxy_pid),
                open_files(proxy_pid),
            )
            rate = (cur.chunks - last.chunks) / max(cur.t_s - last.t_s, 1e-9)
            print(
                f"{cur.t_s:6.0f} {cur.requests:9d} {cur.errors:7d} {rate:9.0f} "
                f"{cur.rss_mib:14.1f} {cur.files:10d}",
                flush=True,
            )
            samples.append(cur)
            last = cur
    return tally, samples


def at(samples: list[Sample], t_s: float) -> Sample:
    """The first sample at or after t_s (the last one if none)."""
    return next((s for s in samples if s.t_s >= t_s), samples[-1])


def report(args: argparse.Namespace, tally: Tally, samples: list[Sample], warnings: int) -> bool:
    start, end = samples[0], samples[-1]
    warm = at(samples, args.warmup)
    middle = at(samples, end.t_s / 2)
    growth = (end.rss_mib - warm.rss_mib) / warm.rss_mib
    print(
        f"\n{tally.ok + tally.failed} requests in {end.t_s:.0f} s with {args.streams} streams; "
        f"{tally.ok} complete, {tally.failed} failed; {tally.chunks / end.t_s:.0f} chunks/s"
    )
    for kind, n in tally.errors.most_common(10):
        print(f"  {n:6d}  {kind}")
    retried = sum(tally.retried.values())
    print(f"retried (connection died before any answer, sent again): {retried}")
    for kind, n in tally.retried.most_common(5):
        print(f"  {n:6d}  {kind}")
    print(f"proxy warnings logged: {warnings}")
    print(
        f"proxy RSS MiB: start {start.rss_mib:.1f}, after warm-up ({warm.t_s:.0f} s) {warm.rss_mib:.1f}, "
        f"middle ({middle.t_s:.0f} s) {middle.rss_mib:.1f}, end ({end.t_s:.0f} s) {end.rss_mib:.1f}; "
        f"growth after warm-up {growth:+.1%} (target < {TARGET_GROWTH:.0%})"
    )
    print(f"proxy open files: start {start.files}, end {end.files}")
    met = tally.failed == 0 and retried == 0 and growth < TARGET_GROWTH
    print("target " + ("met" if met else "MISSED") + ": no error or retry, RSS growth after warm-up < 10%")
    return met


def main(argv: list[str] | None = None) -> int:
    from testbed.cli_errors import OneLineErrorParser

    p = OneLineErrorParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=512, help="concurrent streams (default 512)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long to hold them (default 10)")
    p.add_argument("--tokens", type=int, default=64, help="SSE chunks per stream (default 64)")
    p.add_argument("--chunk-interval", type=float, default=0.05, help="upstream gap between chunks, s (0.05)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline (default 60)")
    p.add_argument("--sample-every", type=float, default=30.0, help="seconds between samples (default 30)")
    p.add_argument("--request-timeout", type=float, default=120.0, help="client timeout per request, s")
    p.add_argument("--log-dir", type=Path, help="keep the upstream and proxy logs here (default: a temp dir)")
    args = p.parse_args(argv)
    if not (args.streams > 0 and args.minutes > 0 and args.tokens > 0):
        p.error("--streams, --minutes and --tokens must be > 0")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="proxy-soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    fake_args = [
        "fake_upstream",
        "--model",
        "soak",
        "--no-record",
        "--chunk-interval",
        str(args.chunk_interval),
    ]
    fake, up = start_process(fake_args, log_dir / "upstream.log", r"fake upstream on (http://\S+)")
    proxy = None
    try:
        proxy_args = ["proxy", "--port", "0", "--connector", "example", "--prefill", up, "--decode", up]
        proxy, proxy_url = start_process(proxy_args, log_dir / "proxy.log", r"proxy on (http://\S+)")
        print(
            f"soak: {args.streams} streams x {args.minutes:g} min, {args.tokens} chunks every "
            f"{args.chunk_interval:g} s; proxy {proxy_url} (pid {proxy.pid}), upstream {up}; "
            f"logs in {log_dir}"
        )
        try:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                tally, samples = runner.run(soak(args, proxy_url, proxy.pid))
        except ImportError:
            tally, samples = asyncio.run(soak(args, proxy_url, proxy.pid))
        warnings = (log_dir / "proxy.log").read_text(errors="replace").count(" WARNING ")
        return 0 if report(args, tally, samples, warnings) else 1
    finally:
        if proxy is not None:
            stop(proxy)
        stop(fake)


if __name__ == "__main__":
    sys.exit(main())

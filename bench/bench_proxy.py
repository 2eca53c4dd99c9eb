"""Benchmark: latency the proxy adds over calling the decode server directly, and chunks/s it forwards.

    python -m bench.bench_proxy [--chunks 64] [--concurrency 1,64,512] [--repeat 3] [--json out.json]

One local fake upstream (`fake_upstream.FakeUpstream`, playing both roles: a non-streamed request gets
one JSON answer at once, a streamed one N SSE events) and the client share one event loop in this
process, pinned to one CPU; the proxy runs as `python -m proxy` in a subprocess pinned to another CPU.
For each concurrency level it runs three modes, interleaved `--repeat` times: direct (client ->
decode), split (client -> proxy -> prefill + decode, connector example) and passthrough (client ->
proxy -> decode). Prints TTFT and inter-chunk gap percentiles (samples pooled over repetitions),
chunks/s (median and range over repetitions), the TTFT the proxy adds (split/passthrough minus direct,
p50 and p99), the proxy's CPU use and chunks per proxy CPU-second, and the median proxy_overhead_ms
the proxy reports in its timing comment. Requests go through the runner's client
(experiments.client.send_request): TTFT is the first chunk that carried text, gaps are between such
chunks (the chunks of one network read share its arrival time, as in the runner's records).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

from experiments.client import ClientConfig, make_session, send_request
from experiments.workloads import RequestSpec
from fake_upstream import FakeBehavior, FakeUpstream

REPO = Path(__file__).resolve().parents[1]
_SPEC = RequestSpec(0, "t1 t2 t3", 3, 64)


# -- proxy subprocess --------------------------------------------------------------------------------------


class ProxyProcess:
    """`python -m proxy` on an ephemeral port, optionally pinned to one CPU."""

    def __init__(self, args: list[str], cpu: int | None) -> None:
        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--port", "0", *args],
            cwd=REPO,
            stderr=subprocess.PIPE,
            preexec_fn=pin,  # affinity set before the interpreter starts any thread
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            match = re.search(rb"proxy on (http://\S+)", line)
            if match:
                self.url = match[1].decode()
                return
        self.stop()
        raise RuntimeError(f"proxy did not start: {line.decode(errors='replace').strip()}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- client ------------------------------------------------------------------------------------------------


@dataclass
class LevelResult:
    mode: str
    concurrency: int
    requests: int = 0
    chunks: int = 0
    wall_s: float = 0.0
    errors: int = 0
    proxy_cpu_s: float | None = None
    ttft_ms: list[float] = field(default_factory=list)
    gap_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # chunks/s of each repetition
    cpu_fractions: list[float] = field(default_factory=list)  # proxy CPU / wall, each repetition
    per_cpu_rates: list[float] = field(default_factory=list)  # chunks per proxy CPU-second, each repetition

    @property
    def chunks_per_s(self) -> float:
        return float(np.median(self.rates)) if self.rates else 0.0


def merge(reps: list[LevelResult]) -> LevelResult:
    """One result from repetitions: samples pooled, rates kept per repetition (median reported)."""
    out = LevelResult(reps[0].mode, reps[0].concurrency)
    for r in reps:
        out.requests += r.requests
        out.chunks += r.chunks
        out.errors += r.errors
        for name in ("ttft_ms", "gap_ms", "overhead_ms", "rates", "cpu_fractions", "per_cpu_rates"):
            getattr(out, name).extend(getattr(r, name))
    return out


async def one_request(session: aiohttp.ClientSession, cfg: ClientConfig, res: LevelResult) -> None:
    rec = await send_request(session, _SPEC, cfg)
    if not rec.ok or rec.ttft_ms is None:
        res.errors += 1
        return
    res.ttft_ms.append(rec.ttft_ms)
    res.gap_ms += rec.itl_ms
    if rec.stages is not None and rec.stages.proxy_overhead_ms is not None:
        res.overhead_ms.append(rec.stages.proxy_overhead_ms)
    res.chunks += len(rec.chunk_mono_ns)
    res.requests += 1


async def run_level(
    session: aiohttp.ClientSession,
    base: str,
    mode: str,
    concurrency: int,
    per_stream: int,
    proxy: ProxyProcess | None,
) -> LevelResult:
    cfg = ClientConfig(base, "bench")
    warm = LevelResult(mode, concurrency)
    await asyncio.gather(*(one_request(session, cfg, warm) for _ in range(min(concurrency, 64))))
    res = LevelResult(mode, concurrency)

    async def worker() -> None:
        for _ in range(per_stream):
            await one_request(session, cfg, res)

    cpu0 = proxy.cpu_seconds() if proxy else None
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.wall_s = time.perf_counter() - t0
    res.rates.append(res.chunks / res.wall_s)
    if proxy is not None and cpu0 is not None:
        res.proxy_cpu_s = proxy.cpu_seconds() - cpu0
        res.cpu_fractions.append(res.proxy_cpu_s / res.wall_s)
        res.per_cpu_rates.append(res.chunks / max(res.proxy_cpu_s, 1e-9))
    return res


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def print_level(results: list[LevelResult]) -> None:
    print(
        f"{'mode':<12}{'conc':>5}{'reqs':>6}{'TTFT p50':>10}{'p99':>9}{'gap p50':>9}{'p99':>9}"
        f"{'chunks/s':>10}{'(min-max)':>14}{'proxy CPU':>10}{'ovh p50':>9}{'err':>5}"
    )
    for r in results:
        cpu = f"{100 * np.median(r.cpu_fractions):.0f}%" if r.cpu_fractions else "-"
        spread = f"({min(r.rates):.0f}-{max(r.rates):.0f})"
        ovh = f"{pct(r.overhead_ms, 50):.3f}" if r.overhead_ms else "-"
        ttft = f"{pct(r.ttft_ms, 50):>10.3f}{pct(r.ttft_ms, 99):>9.3f}"
        gap = f"{pct(r.gap_ms, 50):>9.3f}{pct(r.gap_ms, 99):>9.3f}"
        print(
            f"{r.mode:<12}{r.concurrency:>5}{r.requests:>6}{ttft}{gap}"
            f"{r.chunks_per_s:>10.0f}{spread:>14}{cpu:>10}{ovh:>9}{r.errors:>5}"
        )
    direct = results[0]
    for r in results[1:]:
        print(
            f"  {r.mode} adds TTFT p50 {pct(r.ttft_ms, 50) - pct(direct.ttft_ms, 50):+.3f} ms, "
            f"p99 {pct(r.ttft_ms, 99) - pct(direct.ttft_ms, 99):+.3f} ms; "
            f"gap p50 {pct(r.gap_ms, 50) - pct(direct.gap_ms, 50):+.3f} ms"
            + (f"; {np.median(r.per_cpu_rates):.0f} chunks per proxy CPU-second" if r.per_cpu_rates else "")
        )


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpu = client_cpu = None
    if len(cpus) >= 2 and not args.no_pin:
        proxy_cpu, client_cpu = cpus[0], cpus[1]
        os.sched_setaffinity(0, {client_cpu})
    print(
        f"chunks/request={args.chunks} interval={args.chunk_interval_ms} ms  proxy on CPU {proxy_cpu}, "
        f"client+upstreams on CPU {client_cpu}  loop={type(asyncio.get_running_loop()).__module__}"
    )
    fake = FakeUpstream(
        FakeBehavior(chunks=args.chunks, chunk_interval_s=args.chunk_interval_ms / 1e3),
        model="bench",
        record=False,
    )
    up = await fake.start()
    extra = ["--log-level", "info", "--server", args.server] + (["--no-uvloop"] if args.no_uvloop else [])
    split = ProxyProcess(["--connector", "example", "--prefill", up, "--decode", up, *extra], proxy_cpu)
    passthrough = ProxyProcess(["--connector", "passthrough", "--backend", up, *extra], proxy_cpu)
    out: list[dict[str, Any]] = []
    try:
        async with make_session(ClientConfig(up, "bench")) as session:
            for conc in args.concurrency:
                per_stream = max(args.requests_per_stream, args.min_requests // conc)
                targets = [
                    ("direct", up, None),
                    ("split", split.url, split),
                    ("passthrough", passthrough.url, passthrough),
                ]
                reps: dict[str, list[LevelResult]] = {mode: [] for mode, _, _ in targets}
                for _ in range(args.repeat):  # modes interleaved so that machine noise hits all alike
                    for mode, base, proc in targets:
                        res = await run_level(session, base, mode, conc, per_stream, proc)
                        reps[mode].append(res)
                results = [merge(reps[mode]) for mode, _, _ in targets]
                print_level(results)
                for r in results:
                    out.append(
                        {
                            "mode": r.mode,
                            "concurrency": r.concurrency,
                            "requests": r.requests,
                            "errors": r.errors,
                            "chunks_per_s": r.chunks_per_s,
                            "ttft_ms_p50": pct(r.ttft_ms, 50),
                            "ttft_ms_p99": pct(r.ttft_ms, 99),
                            "gap_ms_p50": pct(r.gap_ms, 50),
                            "gap_ms_p99": pct(r.gap_ms, 99),
                            "chunks_per_s_min": min(r.rates),
                            "chunks_per_s_max": max(r.rates),
                            "proxy_cpu_fraction": float(np.median(r.cpu_fractions))
                            if r.cpu_fractions
                            else None,
                            "chunks_per_proxy_cpu_s": float(np.median(r.per_cpu_rates))
                            if r.per_cpu_rates
                            else None,
                            "proxy_overhead_ms_p50": pct(r.overhead_ms, 50) if r.overhead_ms else None,
                        }
                    )
    finally:
        split.stop()
        passthrough.stop()
        await fake.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    from testbed.cli_errors import OneLineErrorParser

    p = OneLineErrorParser(prog="python -m bench.bench_proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=64, help="SSE events per decode answer (default 64)")
    p.add_argument("--chunk-interval-ms", type=float, default=0.0, help="upstream pause between events")
    p.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 64, 512],
        help="comma-separated concurrent streams (default 1,64,512)",
    )
    p.add_argument("--requests-per-stream", type=int, default=3, help="sequential requests per stream")
    p.add_argument("--min-requests", type=int, default=300, help="at least this many requests per level")
    p.add_argument(
        "--repeat", type=int, default=3, help="repetitions per level, modes interleaved (default 3)"
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin proxy and client to separate CPUs")
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio loops (client and proxy)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--server", choices=("hypercorn", "uvicorn"), default="uvicorn", help="proxy's ASGI server"
    )
    args = p.parse_args(argv)
    use_uvloop = not args.no_uvloop
    try:
        import uvloop
    except ImportError:
        use_uvloop = False
    if use_uvloop:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            out = runner.run(bench(args))
    else:
        out = asyncio.run(bench(args))
    if args.json:
        args.json.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

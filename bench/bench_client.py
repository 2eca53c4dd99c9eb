"""Bench of the streaming client's capacity and send precision against a minimal local SSE server.

The client runs pinned to CPU 0, the server (`fake_upstream.FastUpstream`: a raw asyncio protocol with
pre-encoded bytes, in a separate process) to CPU 1. For each server pacing (`--itl-ms`: 0 = a stream's
chunks written back to back, else one chunk every ITL ms) it measures (a) streamed requests/s, chunks/s
and client CPU per request in closed loop with many users, and (b) send lateness versus schedule
(`send_lateness_ns`) under open-loop Poisson arrivals at several rates, each with asyncio and uvloop and
with Python's GC as is, frozen (`gc.freeze()` + higher thresholds) or off during the run. Target:
>= 1000 req/s with p99 send lateness < 2 ms.

    python -m bench.bench_client                 # everything, ~6 minutes
    python -m bench.bench_client --loop uvloop --gc off --rates 100,500,1000,2000 --itl-ms 0
    python -m bench.bench_client --profile --itl-ms 10   # cProfile of the client, closed loop

Numbers are only as good as the machine is quiet: the press/steal column says how much other processes and
the hypervisor took from the cores during each run, and "timer p99" is the lateness floor with no HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import math
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson

from experiments import client
from experiments.arrivals import arrival_offsets
from experiments.client import ClientConfig, make_session, run_closed_loop, run_open_loop
from experiments.schema import Record
from experiments.workloads import RequestSpec
from fake_upstream import FastUpstream

CLIENT_CPU, SERVER_CPU = 0, 1
TARGET_RATE, TARGET_P99_MS = 1000.0, 2.0
_TICKS = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------------------------------------
# Client runs
# ---------------------------------------------------------------------------------------------------------


def _specs(n: int, out_tokens: int) -> list[RequestSpec]:
    prompt = " ".join(f"t{i}" for i in range(32))
    return [RequestSpec(i, prompt, 32, out_tokens) for i in range(n)]


def _sink() -> tuple[Callable[[Record], None], list[Record]]:
    """on_record like the runner's: serialize and write one line per record (to /dev/null)."""
    fd = os.open(os.devnull, os.O_WRONLY)
    kept: list[Record] = []

    def on_record(rec: Record) -> None:
        os.write(fd, orjson.dumps(rec) + b"\n")
        kept.append(rec)

    return on_record, kept


class Contention:
    """During a run: this process's GC pauses, and how much the machine got in the way: CPU pressure (share
    of the time some task waited for a CPU, /proc/pressure/cpu) and steal (share of the client CPU's time
    the hypervisor ran something else, /proc/stat)."""

    def __enter__(self) -> Contention:
        self.gc_pauses_ns: list[int] = []
        self._gc_t0 = 0
        gc.callbacks.append(self._on_gc)
        self._psi0, self._steal0, self._t0 = _psi_cpu_us(), _steal_s(CLIENT_CPU), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)
        psi1, steal1, wall = _psi_cpu_us(), _steal_s(CLIENT_CPU), time.perf_counter() - self._t0
        self.cpu_pressure = None if psi1 is None or self._psi0 is None else (psi1 - self._psi0) / 1e6 / wall
        self.steal = None if steal1 is None or self._steal0 is None else (steal1 - self._steal0) / wall

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter_ns()
        else:
            self.gc_pauses_ns.append(time.perf_counter_ns() - self._gc_t0)

    @property
    def gc_max_ms(self) -> float:
        return max(self.gc_pauses_ns, default=0) / 1e6

    def other_load(self) -> str:
        return f"{_pct(self.cpu_pressure)}/{_pct(self.steal)}"


def _psi_cpu_us() -> int | None:
    try:
        with open("/proc/pressure/cpu") as fh:
            return int(fh.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def _steal_s(cpu: int) -> float | None:
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith(f"cpu{cpu} "):
                    return int(line.split()[8]) / _TICKS
    except (OSError, IndexError, ValueError):
        pass
    return None


GC_MODES = ("default", "freeze", "off")
GC_FREEZE_THRESHOLDS = (10_000, 50, 1000)


@contextlib.contextmanager
def gc_mode(mode: str) -> Iterator[None]:
    """Python's GC during a run. default: as is. freeze: gc.freeze() what exists and raise the thresholds
    (old objects are never rescanned, young ones collected rarely). off: collect, freeze and disable the
    collector (the client's request path makes no reference cycles: refcounting frees everything), then
    collect once after the run."""
    if mode == "default":
        yield
        return
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    if mode == "off":
        gc.disable()
    else:
        gc.set_threshold(*GC_FREEZE_THRESHOLDS)
    try:
        yield
    finally:
        gc.enable()
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        gc.collect()


def _run(loop_kind: str, coro_fn: Callable[[], Any]) -> Any:
    """Run a coroutine on a fresh asyncio or uvloop event loop."""
    if loop_kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro_fn())
    return asyncio.run(coro_fn())


def closed_loop(
    url: str,
    loop_kind: str,
    users: int,
    n: int,
    out_tokens: int,
    server: FastUpstream,
    gc_kind: str = "default",
) -> dict[str, Any]:
    """Closed loop at full speed: throughput, and client CPU per request (robust to other load)."""
    cfg = ClientConfig(endpoint=url, model="bench")
    on_record, kept = _sink()

    async def go() -> tuple[float, float, float]:
        async with make_session(cfg) as session:
            await run_closed_loop(session, _specs(users * 2, out_tokens), users, cfg, lambda r: None)  # warm
            kept.clear()
            t0, c0, s0 = time.perf_counter(), time.process_time(), server.cpu_s()
            await run_closed_loop(session, _specs(n, out_tokens), users, cfg, on_record)
            wall = time.perf_counter() - t0
            return wall, time.process_time() - c0, (server.cpu_s() - s0) / wall

    with gc_mode(gc_kind), Contention() as cont:
        wall, cpu_s, server_cpu = _run(loop_kind, go)
    chunks = sum(len(r.chunk_mono_ns) for r in kept)
    return {
        "req_s": n / wall,
        "cpu_us_per_req": cpu_s / n * 1e6,
        "chunks_s": chunks / wall,
        "failed": sum(not r.ok for r in kept),
        "client_cpu": cpu_s / wall,
        "server_cpu": server_cpu,
        "gc_max_ms": cont.gc_max_ms,
        "other_load": cont.other_load(),
    }


def open_loop(
    url: str, loop_kind: str, rate: float, seconds: float, out_tokens: int, gc_kind: str = "default"
) -> dict[str, Any]:
    """Open-loop Poisson at `rate` for `seconds`: send lateness distribution."""
    cfg = ClientConfig(endpoint=url, model="bench")
    n = max(1, int(rate * seconds))
    offsets = arrival_offsets(n, rate, "poisson", seed=0).tolist()
    on_record, kept = _sink()

    async def go() -> tuple[float, float]:
        async with make_session(cfg) as session:
            await run_closed_loop(session, _specs(64, out_tokens), 64, cfg, lambda r: None)  # warm pool
            t0, c0 = time.perf_counter(), time.process_time()
            await run_open_loop(session, _specs(n, out_tokens), offsets, cfg, on_record)
            wall = time.perf_counter() - t0
            return wall, (time.process_time() - c0) / wall

    with gc_mode(gc_kind), Contention() as cont:
        wall, client_cpu = _run(loop_kind, go)
    late_ms = np.array([r.send_lateness_ms for r in kept], dtype=float)
    sent = np.array([r.sent_mono_ns for r in kept], dtype=float)
    return {
        "gc_max_ms": cont.gc_max_ms,
        "other_load": cont.other_load(),
        "rate": rate,
        "n": n,
        "achieved": (n - 1) / ((sent.max() - sent.min()) / 1e9) if n > 1 else float("nan"),
        "offered": (n - 1) / (offsets[-1] - offsets[0]) if n > 1 else float("nan"),
        "p50_ms": float(np.percentile(late_ms, 50)),
        "p99_ms": float(np.percentile(late_ms, 99)),
        "max_ms": float(late_ms.max()),
        "failed": sum(not r.ok for r in kept),
        "client_cpu": client_cpu,
        "wall_s": wall,
    }


def timer_only(loop_kind: str, rate: float, seconds: float) -> float:
    """p99 lateness (ms) of the client's own sleep-until-scheduled step with no HTTP at all: the floor
    that the event loop's timers and the OS scheduler (other processes on the core) impose."""
    n = max(1, int(rate * seconds))
    offsets = arrival_offsets(n, rate, "poisson", seed=0).tolist()

    async def go() -> list[int]:
        start = time.monotonic_ns() + 1_000_000
        late = []
        for off in offsets:
            scheduled = start + int(off * 1e9)
            await client._sleep_until(scheduled)
            late.append(time.monotonic_ns() - scheduled)
        return late

    return float(np.percentile(np.array(_run(loop_kind, go)) / 1e6, 99))


def profile_closed_loop(url: str, loop_kind: str, users: int, n: int, out_tokens: int, top: int) -> None:
    """Print the client's cProfile (by own time) over one closed-loop run."""
    cfg = ClientConfig(endpoint=url, model="bench")
    on_record, _ = _sink()

    async def go() -> None:
        async with make_session(cfg) as session:
            await run_closed_loop(session, _specs(users, out_tokens), users, cfg, lambda r: None)
            prof = cProfile.Profile()
            prof.enable()
            await run_closed_loop(session, _specs(n, out_tokens), users, cfg, on_record)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
            print(out.getvalue())

    _run(loop_kind, go)


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def main() -> int:
    from testbed.cli_errors import OneLineErrorParser

    p = OneLineErrorParser(
        prog="python -m bench.bench_client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    p.add_argument(
        "--gc",
        type=_gc_modes,
        default=list(GC_MODES),
        help="comma-separated GC modes during each run: default (as is), freeze (gc.freeze() + thresholds "
        f"{GC_FREEZE_THRESHOLDS}), off (frozen and disabled); default: all three",
    )
    p.add_argument(
        "--users",
        type=int,
        default=0,
        help="closed-loop users (default: 64 for ITL 0; for paced streams enough users to ask for "
        "1.5x the target rate, so the client itself is the limit)",
    )
    p.add_argument("--requests", type=int, default=6000, help="closed-loop requests")
    p.add_argument("--tokens", type=int, default=16, help="chunks per stream")
    p.add_argument("--rates", type=_floats, default=[100.0, 500.0, 1000.0], help="open-loop req/s")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each open-loop run")
    p.add_argument("--itl-ms", type=_floats, default=[0.0, 10.0], help="server gaps between chunks")
    p.add_argument(
        "--no-timer-floor",
        dest="timer_floor",
        action="store_false",
        help="skip the timer-only lateness floor (no HTTP), measured once per loop and rate",
    )
    p.add_argument(
        "--profile", action="store_true", help="cProfile the closed loop instead (first --itl-ms value)"
    )
    args = p.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("error: the bench needs 2 CPUs (client on CPU 0, server on CPU 1)", file=sys.stderr)
        return 2
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    variants = [(lk, gk) for lk in loops for gk in args.gc]
    os.sched_setaffinity(0, {CLIENT_CPU})
    print(f"client pinned to CPU {CLIENT_CPU}, server to CPU {SERVER_CPU}; {args.tokens} chunks per stream")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(
        "press/steal: share of the time some task waited for a CPU / share of the client CPU stolen by the "
        "hypervisor (other load on the machine)\n"
    )

    if args.profile:
        server = FastUpstream(args.itl_ms[0], cpu=SERVER_CPU)
        try:
            for lk in loops:
                print(f"== cProfile, closed loop, {lk}, server ITL {args.itl_ms[0]:g} ms ==")
                profile_closed_loop(server.url, lk, args.users or 64, args.requests, args.tokens, 30)
        finally:
            server.stop()
        return 0

    floors: dict[tuple[str, float], float] = {}
    for itl in args.itl_ms:
        server = FastUpstream(itl, cpu=SERVER_CPU)
        try:
            users = args.users or max(64, math.ceil(1.5 * TARGET_RATE * args.tokens * itl / 1000))
            print(f"== server ITL {itl:g} ms ==")
            print(f"(a) closed loop, {users} users, {args.requests} requests")
            print(
                f"{'client':16} {'req/s':>7} {'chunks/s':>8} {'CPU us/req':>10} {'1-core cap':>10} "
                f"{'failed':>6} {'client CPU':>10} {'server CPU':>10} {'GC max ms':>9} {'press/steal':>13}"
            )
            for lk, gk in variants:
                r = closed_loop(server.url, lk, users, args.requests, args.tokens, server, gk)
                print(
                    f"{_label(lk, gk):16} {r['req_s']:7.0f} {r['chunks_s']:8.0f} {r['cpu_us_per_req']:10.0f} "
                    f"{1e6 / r['cpu_us_per_req']:10.0f} {r['failed']:6d} {r['client_cpu']:10.0%} "
                    f"{r['server_cpu']:10.0%} {r['gc_max_ms']:9.2f} {r['other_load']:>13}"
                )
            print(f"\n(b) open-loop Poisson, {args.seconds:g} s per rate: send lateness (sent - scheduled)")
            print(
                f"{'client':16} {'rate':>5} {'n':>5} {'achieved':>8} {'p50 ms':>7} {'p99 ms':>7} "
                f"{'max ms':>7} {'timer p99':>9} {'GC max ms':>9} {'failed':>6} {'client CPU':>10} "
                f"{'press/steal':>13} {'target':>6}"
            )
            for lk, gk in variants:
                for rate in args.rates:
                    r = open_loop(server.url, lk, rate, args.seconds, args.tokens, gk)
                    if args.timer_floor and (lk, rate) not in floors:
                        floors[lk, rate] = timer_only(lk, rate, args.seconds)
                    floor = floors.get((lk, rate), float("nan"))
                    ok = (
                        r["p99_ms"] < TARGET_P99_MS
                        and r["failed"] == 0
                        and r["achieved"] >= 0.9 * r["offered"]
                    )
                    print(
                        f"{_label(lk, gk):16} {rate:5g} {r['n']:5d} {r['achieved']:8.0f} {r['p50_ms']:7.3f} "
                        f"{r['p99_ms']:7.3f} {r['max_ms']:7.2f} {floor:9.3f} {r['gc_max_ms']:9.2f} "
                        f"{r['failed']:6d} {r['client_cpu']:10.0%} {r['other_load']:>13} "
                        f"{'met' if ok else 'MISSED':>6}"
                    )
            print()
        finally:
            server.stop()
    print(
        "1-core cap: requests/s the client could sustain on a dedicated core (1 / CPU per request).\n"
        "timer p99: lateness of the bare sleep-until-scheduled loop (no HTTP), the floor set by timers and "
        "the OS.\ntarget: p99 send lateness < 2 ms, no failures, >= 90% of the schedule's own rate achieved."
    )
    return 0


def _label(loop_kind: str, gc_kind: str) -> str:
    return loop_kind if gc_kind == "default" else f"{loop_kind}+gc{gc_kind}"


def _gc_modes(text: str) -> list[str]:
    modes = [x.strip() for x in text.split(",") if x.strip()]
    bad = [m for m in modes if m not in GC_MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"GC modes are {', '.join(GC_MODES)}; got {text!r}")
    return modes


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Drive an OpenAI-compatible endpoint with a seeded workload and record latency and energy.

Examples:
  python run_experiment.py --mode traditional --endpoint http://127.0.0.1:8000 \\
      --input-len 2048 --output-len 256 --num-requests 200 --rate 4
  python run_experiment.py --mode disagg --sweep-rates 2,4,8 --slo ttft=1000,tpot=50

Per-request records are appended to RUN_DIR/requests.jsonl as requests complete; RUN_DIR/result.json is
written at the end (marked "complete": false if the run was interrupted or failed).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from pathlib import Path

from experiments.arrivals import ARRIVAL_KINDS, ArrivalConfig
from experiments.cli_errors import OneLineErrorParser
from experiments.runner import ExperimentError, run
from experiments.schema import MODES, WORKLOADS, RunConfig, RunResult, Summary, Sweep, WorkloadConfig
from experiments.slo import parse_slo
from experiments.workloads import WorkloadError

DEFAULT_ROLES = {
    "disagg": ("prefill", "decode"),
    "traditional": ("serving", "idle"),
    "passthrough": ("serving", "serving"),
}


def _length(text: str) -> int | tuple[int, int]:
    """'256' or a range '128:512' (inclusive)."""
    try:
        if ":" in text:
            lo, hi = (int(x) for x in text.split(":", 1))
            if not 1 <= lo <= hi:
                raise ValueError
            return lo, hi
        n = int(text)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a length >= 1 or a range MIN:MAX") from None


def _rate(text: str) -> float:
    try:
        r = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of requests per second") from None
    if math.isnan(r) or r <= 0:
        raise argparse.ArgumentTypeError(f"rate must be > 0 requests/s (or inf), got {text}")
    return r


def _rates(text: str) -> list[float]:
    return [_rate(x) for x in text.split(",") if x.strip()]


def _slo(text: str) -> dict[str, float]:
    try:
        return parse_slo(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gpu_ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of GPU indices") from None


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("target")
    g.add_argument(
        "--mode",
        choices=MODES,
        default="traditional",
        help="what the endpoint is: one vLLM instance (traditional), our P/D proxy (disagg), or "
        "the proxy in pass-through mode over N instances (passthrough)",
    )
    g.add_argument(
        "--endpoint", default="http://127.0.0.1:8000", help="base URL of the OpenAI-compatible server"
    )
    g.add_argument(
        "--model", default=None, help="model name to request (default: the first the endpoint lists)"
    )
    g.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer path for building prompts (default: the model's path as the endpoint reports)",
    )
    g.add_argument("--api", choices=("completions", "chat"), default="completions", help="which OpenAI API")
    g.add_argument("--request-timeout", type=float, default=600.0, help="seconds before one request fails")
    g.add_argument(
        "--no-ignore-eos",
        dest="ignore_eos",
        action="store_false",
        help="let generation stop at EOS (default: ignore_eos so output lengths are exact)",
    )
    g.add_argument(
        "--server-metrics",
        default="",
        help="comma-separated vLLM server URLs whose /metrics deltas are stored in the result",
    )

    g.add_argument(
        "--launch-plan",
        type=Path,
        default=None,
        help="launch.json (or its run directory) of the servers driven, recorded as the serving setup "
        "(default: found through the launchers' current run when its endpoint matches)",
    )

    w = p.add_argument_group("workload (seeded, reproducible)")
    w.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="random",
        help="random prompts of exact lengths, one fixed prompt, a ShareGPT JSON file, or a "
        "CSV/JSONL arrival trace (Azure/Mooncake) replayed at its own times",
    )
    w.add_argument("--num-requests", type=int, default=100, help="measured requests (warm-up not counted)")
    w.add_argument("--input-len", type=_length, default=1024, help="prompt tokens: N or MIN:MAX")
    w.add_argument("--output-len", type=_length, default=128, help="output tokens: N or MIN:MAX")
    w.add_argument("--dataset", default=None, help="ShareGPT JSON or trace file for those workloads")
    w.add_argument("--prompt", default=None, help="text of the fixed prompt (fixed workload)")
    w.add_argument("--trace-time-scale", type=float, default=1.0, help="multiply trace inter-arrival times")
    w.add_argument("--seed", type=int, default=0, help="seed of prompts and arrivals")

    a = p.add_argument_group("arrivals")
    a.add_argument(
        "--arrival",
        choices=ARRIVAL_KINDS,
        default="poisson",
        help="poisson/gamma/constant at --rate, closed-loop --concurrency users, or trace times",
    )
    a.add_argument(
        "--rate", type=_rate, default=None, help="requests per second (open loop); inf = all at once"
    )
    a.add_argument(
        "--sweep-rates",
        type=_rates,
        default=None,
        help="comma-separated rates: one run per rate, tagged as one sweep for compare_performance.py",
    )
    a.add_argument("--burstiness", type=float, default=1.0, help="gamma shape: < 1 burstier, > 1 smoother")
    a.add_argument("--concurrency", type=int, default=None, help="closed-loop users")
    a.add_argument("--max-concurrency", type=int, default=None, help="cap on requests in flight")
    a.add_argument("--warmup", type=int, default=2, help="warm-up requests, sent first, tagged, not measured")

    m = p.add_argument_group("metrics and energy")
    m.add_argument(
        "--slo", type=_slo, default=None, help="goodput SLOs in ms, e.g. ttft=1000,tpot=50,e2e=20000"
    )
    m.add_argument(
        "--gpu-ids",
        type=_gpu_ids,
        default=[0, 1],
        help="GPUs the monitor records (default 0,1: in traditional mode GPU 1 is the idle one, "
        "recorded separately)",
    )
    m.add_argument(
        "--gpu-roles",
        default=None,
        help="roles of --gpu-ids, e.g. prefill,decode or serving,idle (default by mode)",
    )
    m.add_argument(
        "--monitor",
        choices=("auto", "nvml", "sim", "none"),
        default="auto",
        help="power monitor backend; sim is the simulated NVML (tests only: fake joules)",
    )
    m.add_argument("--monitor-interval", type=float, default=0.1, help="power sample period in s (>= 0.01)")
    m.add_argument("--idle-seconds", type=float, default=5.0, help="idle baseline measured before the run")

    o = p.add_argument_group("output")
    o.add_argument("--output-dir", type=Path, default=Path("results/runs"), help="where run directories go")
    o.add_argument("--tag", default="", help="label added to the run directory name")
    o.add_argument("--run-name", default=None, help="exact run directory name")
    return p


def config_from_args(args: argparse.Namespace, rate: float | None, sweep: Sweep | None) -> RunConfig:
    kind = args.arrival
    if kind in ("poisson", "gamma", "constant") and rate is None:
        raise ExperimentError(f"--arrival {kind} needs --rate (requests/s) or --sweep-rates")
    arrival = ArrivalConfig(
        kind=kind,
        rate=rate if kind in ("poisson", "gamma", "constant") else None,
        burstiness=args.burstiness,
        concurrency=args.concurrency if kind == "closed" else None,
        max_concurrency=args.max_concurrency,
        warmup=args.warmup,
        seed=args.seed,
    )
    if args.num_requests < 1:
        raise ExperimentError(f"--num-requests must be >= 1, got {args.num_requests}")
    roles_text = args.gpu_roles.split(",") if args.gpu_roles else DEFAULT_ROLES[args.mode]
    roles = dict(zip(args.gpu_ids, roles_text, strict=False))
    tag = args.tag
    if sweep is not None:
        tag = "-".join(x for x in (args.tag, f"rate{rate:g}") if x)
    return RunConfig(
        mode=args.mode,
        endpoint=args.endpoint,
        model=args.model,
        tokenizer=args.tokenizer,
        api=args.api,
        ignore_eos=args.ignore_eos,
        request_timeout_s=args.request_timeout,
        slo=args.slo,
        workload=WorkloadConfig(
            kind=args.workload,
            num_requests=args.num_requests,
            input_len=args.input_len,
            output_len=args.output_len,
            dataset=args.dataset,
            prompt=args.prompt,
            trace_time_scale=args.trace_time_scale,
            seed=args.seed,
        ),
        arrival=arrival,
        output_dir=args.output_dir,
        tag=tag,
        run_name=args.run_name if sweep is None else None,
        gpu_ids=args.gpu_ids,
        gpu_roles=roles,
        monitor_backend=args.monitor,
        monitor_interval_s=args.monitor_interval,
        idle_seconds=args.idle_seconds,
        server_metrics_urls=[u for u in args.server_metrics.split(",") if u],
        launch_plan=args.launch_plan,
        sweep=sweep,
    )


def _sigterm(signum: int, frame: object) -> None:
    """SIGTERM does what Ctrl-C does: during the client's event loop the SIGINT handler asyncio installed
    cancels the run, so the requests in flight are recorded as cancelled; elsewhere KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    rates: list[float | None] = list(args.sweep_rates) if args.sweep_rates else [args.rate]
    sweep_id = time.strftime("%Y%m%d-%H%M%S")
    base_seed = args.seed
    for i, rate in enumerate(rates):
        # Each load of a sweep gets its own prompts: repeats would be served from the prefix cache.
        args.seed = base_seed + i
        sweep = (
            Sweep(id=sweep_id, rates=args.sweep_rates, rate=rate, seed_offset=i) if args.sweep_rates else None
        )
        try:
            cfg = config_from_args(args, rate, sweep)
            path = run(cfg, argv)
        except (ExperimentError, WorkloadError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        res = RunResult.load(path)
        print(f"result: {path} ({res.status})")
        if res.summary is not None:
            s = res.summary
            print(
                f"  {s.completed} ok, {s.failed} failed, {s.cancelled} cancelled, "
                f"{s.request_throughput or 0:.2f} req/s, TTFT p50 {_fmt(s, 'ttft_ms')} ms, "
                f"TPOT p50 {_fmt(s, 'tpot_ms')} ms, ITL p99 {_fmt(s, 'itl_ms', 'p99')} ms"
            )
        if not res.complete:
            print(f"  {res.error}", file=sys.stderr)
            return 130 if res.status == "interrupted" else 1
    return 0


def _fmt(summary: Summary, key: str, stat: str = "p50") -> str:
    val = summary.distribution(key).stat(stat)
    return "-" if val is None else f"{val:.1f}"


if __name__ == "__main__":
    sys.exit(main())

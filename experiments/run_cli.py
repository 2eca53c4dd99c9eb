#!/usr/bin/env python3
"""Drive an OpenAI-compatible endpoint with a seeded workload and record latency and energy.

Examples:
  python run_experiment.py --mode disagg          # defaults by endpoint; prints what it will run
  python run_experiment.py --mode traditional --endpoint http://127.0.0.1:8000 \\
      --input-len 2048 --output-len 256 --num-requests 200 --rate 4
  python run_experiment.py --mode disagg --sweep-rates 2,4,8 --slo ttft=1000,tpot=50
  python run_experiment.py --base-url http://127.0.0.1:8000 --dataset-name random --random-input-len 1024 \\
      --random-output-len 128 --num-prompts 100 --request-rate 4 --save-result   # vllm bench serve's flags

Left out, the workload and load (--input-len, --output-len, --num-requests, --rate) follow the endpoint:
2048 -> 256 tokens x 200 requests at 4 req/s on a GPU server, 256 -> 32 x 40 at 1 req/s on a CPU one
(experiments/defaults.py says why). `vllm bench serve`'s flag names are accepted as aliases, and
--save-result writes its result file too.

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

from experiments.arrivals import ARRIVAL_KINDS, OPEN_LOOP_KINDS, ArrivalConfig
from experiments.defaults import defaults_for
from experiments.runner import ExperimentError, fetch_models, run
from experiments.schema import (
    MODES,
    OVERLENGTH_POLICIES,
    WORKLOADS,
    RunConfig,
    RunResult,
    Summary,
    Sweep,
    WorkloadConfig,
    gpu_roles_of_mode,
)
from experiments.slo import parse_slo
from experiments.traces import TraceReplay, describe_trace, is_trace_file, select_trace
from experiments.vllm_result import default_file_name, save_vllm_result
from experiments.workloads import WorkloadError, parse_length
from monitor.counter_schedule import COUNTER_UPDATE_S
from testbed.cli_errors import OneLineErrorParser, arg_type, parse_gpu_ids


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


def _counter_every(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not s >= COUNTER_UPDATE_S:
        raise argparse.ArgumentTypeError(
            f"the energy counter steps every ~{COUNTER_UPDATE_S} s; read it at most that often, got {text}"
        )
    return s


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
        "--endpoint",
        "--base-url",
        default="http://127.0.0.1:8000",
        help="base URL of the OpenAI-compatible server (vLLM bench: --base-url)",
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
        "--ignore-eos", action="store_true", default=True, help="ignore EOS (the default; vLLM bench's flag)"
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
        "--dataset-name",
        choices=WORKLOADS,
        default=None,
        help="random prompts of exact lengths, one fixed prompt, a ShareGPT JSON file, or a "
        "CSV/JSONL arrival trace (Azure/Mooncake) replayed at its own times (default: trace for a "
        "--dataset ending in .csv/.jsonl, else random)",
    )
    w.add_argument(
        "--num-requests",
        "--num-prompts",
        type=int,
        default=None,
        help="measured requests, warm-up not counted (default by endpoint: 200 GPU, 40 CPU)",
    )
    w.add_argument(
        "--input-len",
        "--random-input-len",
        type=arg_type(parse_length),
        default=None,
        help="prompt tokens: N or MIN:MAX (default by endpoint: 2048 GPU, 256 CPU)",
    )
    w.add_argument(
        "--output-len",
        "--random-output-len",
        type=arg_type(parse_length),
        default=None,
        help="output tokens: N or MIN:MAX (default by endpoint: 256 GPU, 32 CPU)",
    )
    w.add_argument(
        "--dataset", "--dataset-path", default=None, help="ShareGPT JSON or trace file for those workloads"
    )
    w.add_argument("--prompt", default=None, help="text of the fixed prompt (fixed workload)")
    t = p.add_argument_group(
        "trace replay (--workload trace: the trace's own arrival times unless --arrival says otherwise)"
    )
    t.add_argument(
        "--trace-time-scale",
        type=float,
        default=None,
        help="multiply the trace's gaps (2 = half the rate); or --rate R: rescaled to a mean of R req/s",
    )
    t.add_argument(
        "--trace-start", type=float, default=0.0, help="slice: seconds into the trace (trace time)"
    )
    t.add_argument("--trace-duration", type=float, default=None, help="slice: seconds of trace time")
    t.add_argument(
        "--trace-first-row",
        type=int,
        default=0,
        help="slice by rows instead: first row (0-based, time order)",
    )
    t.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="context the rows must fit, prompt + output (default: what the endpoint's /v1/models says)",
    )
    t.add_argument(
        "--overlength",
        choices=OVERLENGTH_POLICIES,
        default="clip",
        help="a row longer than --max-model-len: clip its prompt to fit, or skip it (counted either way)",
    )
    w.add_argument("--seed", type=int, default=0, help="seed of prompts and arrivals")

    a = p.add_argument_group("arrivals")
    a.add_argument(
        "--arrival",
        choices=ARRIVAL_KINDS,
        default=None,
        help="poisson/gamma/constant at --rate, closed-loop --concurrency users, or trace times "
        "(default: trace for a trace workload, else poisson, gamma when --burstiness is not 1)",
    )
    a.add_argument(
        "--rate",
        "--request-rate",
        type=_rate,
        default=None,
        help="requests per second (open loop; with trace arrivals, the trace rescaled to this mean); "
        "inf = all at once (default by endpoint: 4 GPU, 1 CPU; a trace: its own times)",
    )
    a.add_argument(
        "--sweep-rates",
        type=_rates,
        default=None,
        help="comma-separated rates: one run per rate (a trace rescaled to each), tagged as one sweep for "
        "compare_performance.py",
    )
    a.add_argument("--burstiness", type=float, default=1.0, help="gamma shape: < 1 burstier, > 1 smoother")
    a.add_argument("--concurrency", type=int, default=None, help="closed-loop users")
    a.add_argument("--max-concurrency", type=int, default=None, help="cap on requests in flight")
    a.add_argument(
        "--warmup",
        "--num-warmups",
        type=int,
        default=2,
        help="warm-up requests, sent first, tagged, not measured",
    )

    m = p.add_argument_group("metrics and energy")
    m.add_argument(
        "--slo",
        type=arg_type(parse_slo),
        default=None,
        help="goodput SLOs in ms, e.g. ttft=1000,tpot=50,e2e=20000",
    )
    m.add_argument(
        "--goodput",
        nargs="+",
        default=None,
        metavar="KEY:MS",
        help="vLLM bench's form of --slo, e.g. --goodput ttft:1000 tpot:50",
    )
    m.add_argument(
        "--gpu-ids",
        type=arg_type(parse_gpu_ids),
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
    m.add_argument(
        "--counter-every",
        type=_counter_every,
        default=None,
        metavar="S",
        help="seconds between the sampler's energy-counter reads (default: as often as 0.2%% of a core "
        "allows, ~1.75 s on an H200); 0.1 reads every counter step, so energy attribution splits the "
        "counter's own joules (local monitor only; a cluster run's node monitors keep the default)",
    )
    m.add_argument("--idle-seconds", type=float, default=5.0, help="idle baseline measured before the run")

    o = p.add_argument_group("output")
    o.add_argument("--output-dir", type=Path, default=Path("results/runs"), help="where run directories go")
    o.add_argument("--tag", default="", help="label added to the run directory name")
    o.add_argument("--run-name", default=None, help="exact run directory name")
    o.add_argument(
        "--dry-run", action="store_true", help="print what would run (defaults filled in) and exit"
    )

    v = p.add_argument_group("vllm bench serve's result file")
    v.add_argument(
        "--save-result",
        action="store_true",
        help="also write the result in `vllm bench serve --save-result`'s JSON shape (ms; ttfts, itls in s)",
    )
    v.add_argument(
        "--save-detailed", action="store_true", help="with it the per-request lists (ttfts, itls, ...)"
    )
    v.add_argument(
        "--result-dir", type=Path, default=None, help="directory of that file (default: the run directory)"
    )
    v.add_argument(
        "--result-filename",
        default=None,
        help="its name (default vLLM's: {backend}-{rate}qps-{model}-{date}.json); implies --save-result",
    )
    return p


def _resolve_trace(args: argparse.Namespace) -> None:
    """Settle a trace workload's arrivals and check the trace flags against each other (one-line errors)."""
    trace_flags = [
        f
        for f, given in (
            ("--trace-time-scale", args.trace_time_scale is not None),
            ("--trace-start", args.trace_start != 0.0),
            ("--trace-duration", args.trace_duration is not None),
            ("--trace-first-row", args.trace_first_row != 0),
        )
        if given
    ]
    if args.workload != "trace":
        if args.arrival == "trace" or trace_flags:
            what = "--arrival trace" if args.arrival == "trace" else ", ".join(trace_flags)
            raise ExperimentError(
                f"{what} needs a trace workload (--workload trace --dataset FILE.csv|.jsonl)"
            )
        return
    if not args.dataset:
        raise ExperimentError("--workload trace needs --dataset PATH (a CSV or JSONL trace)")
    args.arrival = args.arrival or "trace"
    if args.arrival != "trace":
        if args.trace_time_scale is not None:
            raise ExperimentError(
                f"--trace-time-scale scales the trace's own times, but --arrival {args.arrival} replaces "
                "them; drop one"
            )
        return
    if args.burstiness != 1.0:
        raise ExperimentError("--burstiness shapes generated arrivals; trace arrivals keep the trace's gaps")
    if args.trace_time_scale is not None and (args.rate is not None or args.sweep_rates):
        raise ExperimentError(
            "give --trace-time-scale or a target mean rate (--rate/--sweep-rates), not both: the rate sets "
            "the scale"
        )


def resolve_args(args: argparse.Namespace) -> None:
    """Settle what flags leave open: vLLM's forms of ours, the workload and arrival kinds, and the defaults
    the endpoint calls for (experiments.defaults; asks the endpoint only when a default is needed)."""
    if args.endpoint.startswith("/"):
        raise ExperimentError(
            f"--endpoint {args.endpoint} looks like vLLM bench's API path; here --endpoint (or --base-url) "
            "is the server's base URL, e.g. http://127.0.0.1:8000 (add --api chat for /v1/chat/completions)"
        )
    if args.goodput:
        try:
            args.slo = parse_slo(" ".join(args.goodput))
        except ValueError as exc:
            raise ExperimentError(f"--goodput: {exc}") from None
    args.save_result = args.save_result or args.save_detailed or args.result_filename is not None
    if args.sweep_rates and args.result_filename and args.result_dir:
        raise ExperimentError(
            "--sweep-rates with both --result-dir and --result-filename would write every rate to one "
            "file; leave out --result-filename (vLLM's name holds the rate) or --result-dir"
        )
    args.workload = args.workload or ("trace" if is_trace_file(args.dataset) else "random")
    _resolve_trace(args)
    args.arrival = args.arrival or ("poisson" if args.burstiness == 1.0 else "gamma")
    args.defaults = None
    args.trace = None
    trace_arrivals = args.arrival == "trace"
    lengths = [] if args.workload == "trace" else ["input_len", "output_len"]
    count = [] if trace_arrivals and args.trace_duration is not None else ["num_requests"]
    missing = [f for f in (*lengths, *count) if getattr(args, f) is None]
    if args.arrival in OPEN_LOOP_KINDS and args.rate is None and not args.sweep_rates:
        missing.append("rate")
    if missing:
        defaults, why = defaults_for(args.endpoint, fetch_models(args.endpoint), args.launch_plan)
        for name in missing:
            setattr(args, name, getattr(defaults, name))
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        args.defaults = f"{defaults.scale.upper()} defaults for {flags}: {why}"
    if args.workload == "trace":
        rate = args.rate if trace_arrivals and not args.sweep_rates else None
        args.trace = select_trace(args.dataset, _replay(args, rate)).info
        args.num_requests = args.num_requests or args.trace.requests


def _replay(args: argparse.Namespace, rate: float | None) -> TraceReplay:
    """The trace replay the flags ask for at one target rate (None: the time scale)."""
    trace_arrivals = args.arrival == "trace"
    return TraceReplay(
        time_scale=None if rate is not None or not trace_arrivals else args.trace_time_scale,
        rate=rate if trace_arrivals else None,
        start_s=args.trace_start,
        duration_s=args.trace_duration,
        first_row=args.trace_first_row,
        count=args.num_requests,
        max_model_len=args.max_model_len,
        overlength=args.overlength,
    )


def plan_text(args: argparse.Namespace) -> str:
    """What will run, printed at the start."""
    if args.workload in ("random", "fixed"):
        prompt = "one fixed prompt" if args.workload == "fixed" else "random prompts"
        size = "given" if args.prompt else f"{_text(args.input_len)} tokens"
        workload = f"{prompt} of {size} -> {_text(args.output_len)} output tokens"
    else:
        workload = f"{args.workload} from {args.dataset}"
    if args.arrival == "closed":
        load = f"closed loop, {args.concurrency} users"
    elif args.arrival == "trace" and args.sweep_rates:
        means = ", ".join(f"{r:g}" for r in args.sweep_rates)
        load = f"the trace rescaled to a mean of {means} req/s (one run each)"
    elif args.arrival == "trace":
        load = "trace arrivals"
    elif args.sweep_rates:
        load = f"{args.arrival} at {', '.join(f'{r:g}' for r in args.sweep_rates)} req/s (one run each)"
    else:
        load = f"{args.arrival} at {args.rate:g} req/s"
    if args.max_concurrency:
        load += f", at most {args.max_concurrency} in flight"
    slo = ", ".join(f"{k} {v:g} ms" for k, v in args.slo.items()) if args.slo else "none (no goodput)"
    lines = [
        f"run_experiment: {args.mode} at {args.endpoint}",
        f"  workload: {workload}, {args.num_requests} requests (+{args.warmup} warm-up), seed {args.seed}",
        f"  load:     {load}",
    ]
    if args.trace is not None:
        lines.append(f"  trace:    {describe_trace(args.trace, args.arrival)}")
    lines += [f"  SLO:      {slo}", f"  output:   {args.output_dir}/" + (args.run_name or "")]
    if args.defaults:
        lines.append(f"  {args.defaults}")
    return "\n".join(lines)


def _text(length: int | tuple[int, int]) -> str:
    return f"{length[0]}-{length[1]}" if isinstance(length, tuple) else str(length)


def config_from_args(args: argparse.Namespace, rate: float | None, sweep: Sweep | None) -> RunConfig:
    kind = args.arrival
    replay = _replay(args, rate)
    if kind in OPEN_LOOP_KINDS and rate is None:
        raise ExperimentError(f"--arrival {kind} needs --rate (requests/s) or --sweep-rates")
    arrival = ArrivalConfig(
        kind=kind,
        rate=rate if kind in OPEN_LOOP_KINDS else None,
        burstiness=args.burstiness,
        concurrency=args.concurrency if kind == "closed" else None,
        max_concurrency=args.max_concurrency,
        warmup=args.warmup,
        seed=args.seed,
    )
    if args.num_requests < 1:
        raise ExperimentError(f"--num-requests must be >= 1, got {args.num_requests}")
    roles_text = args.gpu_roles.split(",") if args.gpu_roles else gpu_roles_of_mode(args.mode)
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
            trace_time_scale=replay.time_scale,
            trace_rate=replay.rate,
            trace_start_s=replay.start_s,
            trace_duration_s=replay.duration_s,
            trace_first_row=replay.first_row,
            max_model_len=replay.max_model_len,
            overlength=replay.overlength,
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
        monitor_counter_every_s=args.counter_every,
        idle_seconds=args.idle_seconds,
        server_metrics_urls=[u for u in args.server_metrics.split(",") if u],
        launch_plan=args.launch_plan,
        sweep=sweep,
        defaults=args.defaults,
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
    try:
        resolve_args(args)
    except (ExperimentError, WorkloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(plan_text(args), flush=True)
    if args.dry_run:
        return 0
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
        if args.save_result and res.summary is not None:
            target = (args.result_dir or path.parent) / (args.result_filename or default_file_name(res))
            print(f"  vllm bench serve's form: {save_vllm_result(res, target, args.save_detailed)}")
        if res.summary is not None:
            s = res.summary
            if res.metadata.trace is not None:
                print(f"  trace: {describe_trace(res.metadata.trace, res.metadata.config.arrival.kind)}")
            print(
                f"  {s.completed} ok, {s.failed} failed, {s.cancelled} cancelled; arrived at "
                f"{s.arrival_rate or 0:.2f} req/s, done {s.request_throughput or 0:.2f} req/s; "
                f"TTFT p50 {_fmt(s, 'ttft_ms')} ms, TPOT p50 {_fmt(s, 'tpot_ms')} ms, "
                f"ITL p99 {_fmt(s, 'itl_ms', 'p99')} ms"
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

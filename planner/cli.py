"""`python -m planner simulate|search|validate|predict|points|policies|break-even|profile|kv|merge|loop|
ttft-parts|derive`: predict setups from a profile, prove them against measured runs, or measure a profile.

    python -m planner simulate --profile P --setup 1P1D,replicas:2 --rates 2,4,8 --slo ttft=500,tpot=25
    python -m planner simulate --profile P --setup 1P1D/threshold:1024,1P1D/load --rates 4,8 ...
    python -m planner search --profile P --gpus 4,8,16,64 --slo ttft=500,tpot=25 --input-len 2048
    python -m planner validate --profile P --measured results/h200x2/frontier
    python -m planner predict --profile P --out results/planner/predictions
    python -m planner policies --profile P --trace T.csv --out DIR   (per-request policies on 2 GPUs)
    python -m planner profile --endpoint http://127.0.0.1:8000 --output profile.json
    python -m planner kv --profile P --pd-result RUN --output P2   (the KV side, from another P/D run)
    python -m planner merge P1 P2 --output P [--pd-result RUN]      (one profile from two profile runs)
    python -m planner loop --profile P --measured DIR --output P2  (async scheduling, API-server s/output)
    python -m planner ttft-parts --profile P --measured DIR --before V0 --after V1 --out MD
    python -m planner break-even --profile NAME=P [...] --out DIR    (where P/D pays, per model)
    python -m planner derive --from P --model qwen2.5-32b --out P2  (predict another model's profile)

`--profile illustrative` uses the built-in illustrative H200 numbers (planner/illustrative.py; not a
measurement). Workload flags are the runner's (`run_experiment.py`): --workload, --input-len N or
MIN:MAX, --output-len, --dataset, --num-requests, --seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.schema import OVERLENGTH_POLICIES
from experiments.slo import parse_slo
from experiments.timing_checks import find_ramp
from experiments.traces import describe_trace
from experiments.workloads import parse_length
from planner import plots
from planner.outcome import Outcome, request_metrics, summarize
from planner.profile_model import EngineLimits, Profile, ProfileError, load_profile
from planner.search import SearchConfig, search
from planner.setups import POLICIES, parse_setup
from planner.simulate import SimulationError, simulate
from planner.workload import ARRIVAL_KINDS, WORKLOAD_KINDS, WorkloadSpec, build_workload
from testbed.cli_errors import OneLineErrorParser, arg_type

ILLUSTRATIVE = "illustrative"


def _numbers(text: str, kind: type = float) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers, e.g. 2,4,8")
    return values


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", required=True, help=f"profile JSON (python -m planner profile), or {ILLUSTRATIVE!r}"
    )
    p.add_argument("--slo", type=arg_type(parse_slo), default=None, help="SLO in ms, e.g. ttft=500,tpot=25")
    p.add_argument("--target", type=float, default=0.9, help="SLO attainment that counts as sustained")
    p.add_argument("--policy", choices=POLICIES, default="round_robin", help="proxy instance selection")
    w = p.add_argument_group("workload (as run_experiment.py)")
    w.add_argument("--workload", choices=WORKLOAD_KINDS, default="random")
    w.add_argument(
        "--input-len", type=arg_type(parse_length), default=2048, help="prompt tokens: N or MIN:MAX"
    )
    w.add_argument(
        "--output-len", type=arg_type(parse_length), default=256, help="output tokens: N or MIN:MAX"
    )
    w.add_argument("--dataset", default=None, help="trace (.csv/.jsonl) or ShareGPT JSON")
    w.add_argument("--tokenizer", default=None, help="model directory whose tokenizer counts ShareGPT text")
    w.add_argument(
        "--trace-time-scale",
        type=float,
        default=None,
        help="trace replay: multiply its gaps (or give --rates: the trace rescaled to each mean rate)",
    )
    w.add_argument("--trace-start", type=float, default=0.0, help="trace slice: seconds into the trace")
    w.add_argument("--trace-duration", type=float, default=None, help="trace slice: seconds of trace time")
    w.add_argument("--trace-first-row", type=int, default=0, help="trace slice by rows: first row")
    w.add_argument(
        "--max-model-len", type=int, default=None, help="trace rows must fit this context (prompt + output)"
    )
    w.add_argument(
        "--overlength", choices=OVERLENGTH_POLICIES, default="clip", help="rows longer: clip or skip"
    )
    w.add_argument("--num-requests", type=int, default=2000, help="requests per simulated run")
    w.add_argument("--seed", type=int, default=0, help="seed of lengths and arrivals")
    w.add_argument(
        "--arrival",
        choices=ARRIVAL_KINDS,
        default=None,
        help="default: trace for a trace workload, else poisson",
    )
    w.add_argument("--burstiness", type=float, default=1.0, help="gamma shape (arrival gamma only)")
    e = p.add_argument_group("engine limits (default: the profile's)")
    e.add_argument("--max-num-batched-tokens", type=int, default=None)
    e.add_argument("--max-num-seqs", type=int, default=None)
    e.add_argument("--kv-capacity", type=int, default=None, help="KV cache tokens per instance")
    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, default=None, help="write every number printed as JSON here")
    o.add_argument("--plot-dir", type=Path, default=None, help="write PNG plots here")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m planner", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    sim = sub.add_parser("simulate", help="predict latency, SLO attainment and energy of setups at rates")
    _add_model_args(sim)
    sim.add_argument(
        "--setup", action="append", required=True, help="single, replicas:N or xPyD (repeatable)"
    )
    sim.add_argument(
        "--rates", type=_numbers, default=None, help="offered req/s, e.g. 2,4,8 (not for traces)"
    )
    srch = sub.add_parser("search", help="best xPyD ratios per GPU count by goodput per GPU at an SLO")
    _add_model_args(srch)
    srch.add_argument(
        "--gpus", type=lambda t: _numbers(t, int), required=True, help="GPU counts, e.g. 4,8,16,64"
    )
    srch.add_argument("--top", type=int, default=3, help="setups to print per GPU count")
    srch.add_argument(
        "--requests-per-gpu",
        type=int,
        default=300,
        help="requests per run = max(this x GPUs, --num-requests)",
    )
    srch.add_argument(
        "--precision", type=float, default=0.02, help="relative precision of the sustained rate"
    )
    from planner.break_even_diff import add_break_even_diff_parser
    from planner.break_even_report import add_break_even_parser
    from planner.derive import add_derive_parser
    from planner.kv_refit import add_kv_parser
    from planner.loop_refit import add_loop_parser
    from planner.merge import add_merge_parser
    from planner.points import add_points_parser
    from planner.policy_predict import add_policies_parser
    from planner.predict import add_predict_parser
    from planner.profile_run import add_profile_parser
    from planner.ttft_parts import add_ttft_parts_parser
    from planner.validate_report import add_validate_parser

    add_validate_parser(sub)
    add_predict_parser(sub)
    add_policies_parser(sub)
    add_profile_parser(sub)
    add_kv_parser(sub)
    add_loop_parser(sub)
    add_ttft_parts_parser(sub)
    add_merge_parser(sub)
    add_points_parser(sub)
    add_break_even_parser(sub)
    add_break_even_diff_parser(sub)
    add_derive_parser(sub)
    return parser


# ---------------------------------------------------------------------------------------------------------


def profile_from_arg(text: str) -> Profile:
    """A profile file, or the built-in illustrative one; warns when it is not measured."""
    if text == ILLUSTRATIVE:
        from planner.illustrative import illustrative_profile

        prof = illustrative_profile()
    else:
        prof = load_profile(text)
    if prof.provenance.source != "measured":
        print(f"warning: profile source is {prof.provenance.source!r}, not measured", file=sys.stderr)
    return prof


def _load(args: argparse.Namespace) -> tuple[Profile, EngineLimits]:
    prof = profile_from_arg(args.profile)
    e = prof.engine
    flags = (args.max_num_batched_tokens, args.max_num_seqs, args.kv_capacity)
    limits = EngineLimits(
        args.max_num_batched_tokens or e.max_num_batched_tokens,
        args.max_num_seqs or e.max_num_seqs,
        args.kv_capacity or e.kv_capacity_tokens,
        e.block_size,
        "flags over the profile's" if any(f is not None for f in flags) else e.source,
    )
    return prof, limits


def _resolve_arrival(args: argparse.Namespace) -> None:
    """A trace workload replays the trace's times unless --arrival says otherwise; flags that contradict
    each other are one-line errors (as in run_experiment.py)."""
    trace = args.workload == "trace"
    args.arrival = args.arrival or ("trace" if trace else "poisson")
    if args.arrival == "trace" and not trace:
        raise ValueError("--arrival trace needs a trace workload (--workload trace --dataset FILE)")
    if args.trace_time_scale is not None and (args.arrival != "trace" or getattr(args, "rates", None)):
        raise ValueError(
            "--trace-time-scale scales a trace's own times: not with generated arrivals, and not with "
            "--rates (a rate sets the scale)"
        )


def _workload_spec(args: argparse.Namespace) -> WorkloadSpec:
    _resolve_arrival(args)
    return WorkloadSpec(
        kind=args.workload,
        num_requests=args.num_requests,
        input_len=args.input_len,
        output_len=args.output_len,
        dataset=args.dataset,
        tokenizer=args.tokenizer,
        trace_time_scale=args.trace_time_scale,
        trace_start_s=args.trace_start,
        trace_duration_s=args.trace_duration,
        trace_first_row=args.trace_first_row,
        max_model_len=args.max_model_len,
        overlength=args.overlength,
        seed=args.seed,
    )


def _slo_text(slo: dict[str, float] | None) -> str:
    return ", ".join(f"{k} <= {v:g} ms" for k, v in (slo or {}).items()) or "no SLO"


def _energy_text(o: Outcome) -> str:
    e = o.energy
    if e.j_per_request is None:
        return "-"
    return f"{e.j_per_request:.1f} ({e.static_j_per_request:.0f}+{e.dynamic_j_per_request:.0f})"


def _row(o: Outcome) -> str:
    att = f"{100 * o.attainment:.1f}%" if o.attainment is not None else "-"
    good = f"{o.goodput_rps:.2f}" if o.goodput_rps is not None else "-"
    busy = " ".join(f"{role[0].upper()} {u:.2f}" for role, u in o.utilization.items())
    return (
        f"{o.setup:<12} {o.rate if o.rate is not None else float('nan'):>7.2f} {o.throughput_rps:>7.2f} "
        f"{o.ttft_ms['p50']:>8.1f} {o.ttft_ms['p99']:>8.1f} {o.tpot_ms['mean'] or 0:>7.2f} "
        f"{o.tpot_ms['p99'] or 0:>7.2f} {o.e2el_ms['p50']:>8.0f} {att:>7} {good:>7} "
        f"{_energy_text(o):>17}  {busy}"
    )


HEADER = (
    f"{'setup':<12} {'rate':>7} {'done/s':>7} {'TTFT p50':>8} {'TTFT p99':>8} {'TPOT':>7} {'TPOT p99':>7} "
    f"{'E2E p50':>8} {'attain':>7} {'goodput':>7} {'J/req (st+dyn)':>17}  busy"
)


def cmd_simulate(args: argparse.Namespace) -> int:
    prof, limits = _load(args)
    spec = _workload_spec(args)
    workload = build_workload(spec)
    rates: list[float | None] = list(args.rates) if args.rates else [None]
    if args.arrival != "trace" and not args.rates:
        raise ValueError("give --rates (requests/s), e.g. --rates 2,4,8")
    setups = [parse_setup(s, args.policy) for part in args.setup for s in part.split(",") if s.strip()]
    print(prof.describe())
    print(
        f"workload: {spec.describe()}, {len(workload)} requests, {args.arrival} arrivals, "
        f"seed {spec.seed}; SLO {_slo_text(args.slo)}"
    )
    if workload.trace is not None:
        print(f"trace: {describe_trace(workload.trace, args.arrival)}")
    print(HEADER)
    series: dict[str, list[Outcome]] = {}
    for setup in setups:
        outs = series.setdefault(setup.name, [])
        for rate in rates:
            arrivals = workload.arrivals(args.arrival, rate, args.burstiness, args.seed)
            run = simulate(
                prof,
                setup,
                workload.prompt_tokens,
                workload.output_tokens,
                arrivals,
                limits,
                rate,
                prefix=workload.prefix,
            )
            metrics = request_metrics(run)
            out = summarize(run, prof.power, args.slo, metrics=metrics)
            outs.append(out)
            print(_row(out))
            if found := find_ramp(arrivals, metrics["e2el_ms"]):
                at = "the trace" if rate is None else f"{rate:g} req/s"
                print(f"  {setup.name} at {at}: {found.warning()}")
    if args.slo:
        for name, outs in series.items():
            ok = [
                o.rate
                for o in outs
                if o.rate is not None and o.attainment is not None and o.attainment >= args.target
            ]
            gpus = outs[0].gpus
            if ok:
                print(
                    f"{name}: highest given rate with attainment >= {args.target:.0%}: {max(ok):g} req/s "
                    f"= {max(ok) / gpus:.2f} req/s per GPU"
                )
            else:
                print(f"{name}: no given rate reaches {args.target:.0%} attainment")
    if args.plot_dir and args.slo:
        print(
            plots.save(
                plots.attainment_figure(series, args.target, _slo_text(args.slo)),
                args.plot_dir / "attainment.png",
            )
        )
    if args.plot_dir:
        print(plots.save(plots.energy_figure(series), args.plot_dir / "energy.png"))
    if args.json:
        _write_json(
            args.json, prof, spec, {"outcomes": [o.to_dict() for outs in series.values() for o in outs]}
        )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if not args.slo:
        raise ValueError("search needs --slo, e.g. --slo ttft=500,tpot=25")
    prof, limits = _load(args)
    spec = _workload_spec(args)
    cfg = SearchConfig(
        args.slo,
        args.target,
        args.precision,
        args.arrival,
        args.burstiness,
        args.seed,
        args.requests_per_gpu,
        args.num_requests,
    )
    print(prof.describe())
    print(
        f"workload: {spec.describe()}, {cfg.arrival} arrivals; SLO {_slo_text(args.slo)}, "
        f"sustained = attainment >= {cfg.target:.0%}"
    )
    found = search(prof, args.gpus, spec, cfg, args.top, args.policy, limits, progress=print)
    print(
        f"{'GPUs':>4} {'setup':<10} {'goodput/GPU':>11} {'sustained/s':>11} {'J/req (st+dyn)':>17} "
        f"{'TTFT p99':>8} {'TPOT p99':>8}"
    )
    for gpus, results in found.items():
        for r in results:
            o = r.at_sustained
            energy = _energy_text(o) if o else "-"
            ttft = f"{o.ttft_ms['p99']:.0f}" if o else "-"
            tpot = f"{o.tpot_ms['p99']:.1f}" if o and o.tpot_ms["p99"] is not None else "-"
            print(
                f"{gpus:>4} {r.setup.name:<10} {r.goodput_per_gpu:>11.2f} {r.sustained_rps:>11.2f} "
                f"{energy:>17} {ttft:>8} {tpot:>8}" + (f"  ({r.note})" if r.note else "")
            )
    if args.plot_dir:
        fig = plots.goodput_figure(found, _slo_text(args.slo), cfg.target)
        print(plots.save(fig, args.plot_dir / "goodput_per_gpu.png"))
    if args.json:
        body = {
            "search": dataclasses.asdict(cfg),
            "best": {str(g): [r.to_dict() for r in rs] for g, rs in found.items()},
        }
        _write_json(args.json, prof, spec, body)
    return 0


def _write_json(path: Path, prof: Profile, spec: WorkloadSpec, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"profile": dataclasses.asdict(prof.provenance), "workload": dataclasses.asdict(spec), **body}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"json: {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return cmd_simulate(args)
        if args.command == "search":
            return cmd_search(args)
        if args.command == "validate":
            from planner.validate_report import cmd_validate

            return cmd_validate(args, profile_from_arg(args.profile))
        if args.command == "policies":
            from planner.policy_predict import cmd_policies

            return cmd_policies(args, profile_from_arg(args.profile))
        if args.command == "predict":
            from planner.predict import cmd_predict

            return cmd_predict(args, profile_from_arg(args.profile))
        if args.command == "kv":
            from planner.kv_refit import cmd_kv

            return cmd_kv(args)
        if args.command == "loop":
            from planner.loop_refit import cmd_loop

            return cmd_loop(args)
        if args.command == "ttft-parts":
            from planner.ttft_parts import cmd_ttft_parts

            return cmd_ttft_parts(args)
        if args.command == "merge":
            from planner.merge import cmd_merge

            return cmd_merge(args)
        if args.command == "points":
            from planner import points

            if args.verb == "predict":
                return points.cmd_predict(args, profile_from_arg(args.profile))
            return points.cmd_compare(args)
        if args.command == "break-even":
            from planner.break_even_report import cmd_break_even

            return cmd_break_even(args, profile_from_arg)
        if args.command == "break-even-diff":
            from planner.break_even_diff import cmd_break_even_diff

            return cmd_break_even_diff(args)
        if args.command == "derive":
            from planner.derive import cmd_derive

            return cmd_derive(args, sys.argv[1:] if argv is None else argv)
        from planner.profile_run import cmd_profile

        return cmd_profile(args)
    except (ProfileError, SimulationError, ValueError) as exc:  # bad input: a flag, profile or file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # the work itself failed (e.g. no server to profile)
        print(f"error: {exc}", file=sys.stderr)
        return 1

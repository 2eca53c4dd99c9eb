"""`python -m planner points`: predict every point a campaign will run, before it runs; then judge it.

    python -m planner points predict --profile results/profiles/h200-8b.json --setup single \\
        --shapes azure-conv,mooncake-conv --max-model-len 32768 --out results/h200/traces/predictions
    python -m planner points compare --predictions results/h200/traces/predictions/predictions.json \\
        --measured results/h200/traces

`predict` simulates each shape x rate of experiments/shapes.py with what the campaign will send: the same
request count, lengths and (for a trace) the trace's own gaps rescaled to the rate's mean and its prompt
blocks; the seed only changes prompt text, which the simulator does not read. It writes predictions.json
and predictions.md: commit them before the runs (their commit must precede the results'). `compare`
matches each measured run (<measured>/<shape>/<setup>/*-rate<R>) with its prediction and writes
comparison.md / .json: predicted vs measured TTFT p50/p99, TPOT p50/p99, E2E p50 and J per request,
the error of each, and whether the point was below saturation (requests left at >= 95% of the rate they
arrived at, `departure_rate`: past it, latency grows with the run's length and no steady state exists).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.schema import RunResult
from experiments.shapes import SHAPES, Shape
from experiments.timing_checks import find_ramp
from experiments.workloads import parse_length
from planner.measured import find_measured, measured_from
from planner.outcome import request_metrics, summarize
from planner.profile_model import Profile
from planner.setups import parse_setup
from planner.simulate import simulate
from planner.validate import Figures, figures, relative_error
from planner.workload import WorkloadSpec, build_workload

METRICS = ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "e2el_p50_ms", "j_per_request")
TOLERANCE = 0.15  # the criterion of the trace issue: every metric within +-15% below saturation
SATURATED = 0.95  # completed / arrived below this: past saturation


@dataclass(frozen=True)
class PointPrediction:
    shape: str
    setup: str
    rate: float  # the nominal (target mean) rate
    requests: int
    offered_rate: float | None  # the simulated arrivals' mean rate ((n - 1) / span)
    predicted: Figures
    prefix_hit_rate: float | None
    note: str | None  # not a steady state, etc.


def shape_spec(shape: Shape, rate: float, floor: int, max_model_len: int | None) -> WorkloadSpec:
    """The planner's workload for one point of a campaign shape (what run_experiment.py will send)."""
    n = shape.requests(rate, floor)
    if shape.dataset is not None:
        return WorkloadSpec(
            kind="trace", num_requests=n, dataset=shape.dataset, trace_rate=rate, max_model_len=max_model_len
        )

    return WorkloadSpec(
        kind="random",
        num_requests=n,
        input_len=parse_length(shape.input_len),
        output_len=parse_length(shape.output_len),
        seed=shape.seed(rate),
    )


def predict_point(
    profile: Profile, setup: str, shape: Shape, rate: float, floor: int, max_model_len: int | None
) -> PointPrediction:
    workload = build_workload(shape_spec(shape, rate, floor, max_model_len))
    kind = "trace" if shape.trace else "poisson"
    arrivals = workload.arrivals(kind, None if shape.trace else rate, seed=shape.seed(rate))
    run = simulate(
        profile,
        parse_setup(setup),
        workload.prompt_tokens,
        workload.output_tokens,
        arrivals,
        rate=rate,
        prefix=workload.prefix,
    )
    metrics = request_metrics(run)
    out = summarize(run, profile.power, None, None, metrics)
    e = out.energy
    hits = [s.prefix_hit_rate for s in run.instances if s.prefix_hit_rate is not None]
    span = float(arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    return PointPrediction(
        shape=shape.name,
        setup=setup,
        rate=rate,
        requests=len(workload),
        offered_rate=(len(arrivals) - 1) / span if span > 0 else None,
        predicted=figures(
            metrics, (e.j_per_request, e.static_j_per_request, e.dynamic_j_per_request), out.throughput_rps
        ),
        prefix_hit_rate=sum(hits) / len(hits) if hits else None,
        note=ramp.as_warning().message if (ramp := find_ramp(arrivals, metrics["e2el_ms"])) else None,
    )


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def predictions_markdown(header: dict[str, Any], points: list[PointPrediction]) -> str:
    lines = [
        f"# Pre-registered predictions: {header['setup']} on {', '.join(header['shapes'])}",
        "",
        f"Made {header['made_utc']} with `{header['command']}`, "
        + (
            f"after these points ran: in-sample ({header['in_sample']})."
            if header.get("in_sample")
            else "before any of these points ran."
        ),
        "",
        f"Profile: {header['profile']}",
        "",
        "| shape | rate (req/s) | requests | offered (req/s) | TTFT p50 / p99 ms | TPOT p50 / p99 ms | "
        "E2E p50 ms | J/request | done (req/s) | prefix hits | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        f = p.predicted
        hits = "-" if p.prefix_hit_rate is None else f"{p.prefix_hit_rate:.0%}"
        lines.append(
            f"| {p.shape} | {p.rate:g} | {p.requests} | {_ms(p.offered_rate, 2)} | "
            f"{_ms(f.ttft_p50_ms)} / {_ms(f.ttft_p99_ms)} | "
            f"{_ms(f.tpot_p50_ms, 2)} / {_ms(f.tpot_p99_ms, 2)} | "
            f"{_ms(f.e2el_p50_ms, 0)} | {_ms(f.j_per_request)} | {_ms(f.throughput_rps, 2)} | {hits} | "
            f"{p.note or ''} |"
        )
    return "\n".join(lines) + "\n"


def cmd_predict(args: argparse.Namespace, profile: Profile) -> int:
    names = [n for n in args.shapes.split(",") if n]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise ValueError(f"unknown shape(s) {unknown or args.shapes!r}; use {', '.join(SHAPES)}")
    points = []
    for name in names:
        shape = SHAPES[name]
        for rate in args.rates or shape.rates:
            p = predict_point(profile, args.setup, shape, rate, args.num_requests, args.max_model_len)
            print(
                f"{name} {rate:g} req/s: {p.requests} requests, TTFT p50 {_ms(p.predicted.ttft_p50_ms)} ms, "
                f"TPOT p50 {_ms(p.predicted.tpot_p50_ms, 2)} ms, J/request {_ms(p.predicted.j_per_request)}"
            )
            points.append(p)
    header = {
        "setup": args.setup,
        "shapes": names,
        "profile": profile.describe().splitlines()[0].removeprefix("profile: "),
        "profile_file": args.profile,
        "made_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": (
            f"python -m planner points predict --profile {args.profile} --setup {args.setup} --shapes "
            f"{args.shapes} --num-requests {args.num_requests}"
            + (f" --max-model-len {args.max_model_len}" if args.max_model_len else "")
            + (f" --rates {','.join(f'{r:g}' for r in args.rates)}" if args.rates else "")
        ),
        "num_requests": args.num_requests,
        "max_model_len": args.max_model_len,
        "in_sample": args.in_sample,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"kind": "point-predictions", **header, "points": [dataclasses.asdict(p) for p in points]}
    (args.out / "predictions.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "predictions.md").write_text(predictions_markdown(header, points))
    print(f"wrote {args.out / 'predictions.md'} and predictions.json")
    return 0


# ---------------------------------------------------------------------------------------------------------


def _rate_of(run_dir: Path) -> float | None:
    tag = run_dir.name.rsplit("-rate", 1)
    try:
        return float(tag[1]) if len(tag) == 2 else None
    except ValueError:
        return None


def departure_rate(res: RunResult) -> float | None:
    """(k - 1) / (last end - first end) over the k successful measured requests: below saturation it
    follows the arrival rate, past it the service rate (no bias from the run's ramp and drain)."""
    ends = sorted(r.end_mono_ns for r in res.measured() if r.succeeded and r.end_mono_ns is not None)
    span = (ends[-1] - ends[0]) / 1e9 if len(ends) > 1 else 0.0
    return (len(ends) - 1) / span if span > 0 else None


def compare_rows(doc: dict[str, Any], measured_root: Path) -> list[dict[str, Any]]:
    """One row per measured run that has a prediction: both sides, errors, realized load, saturation."""
    predicted = {(p["shape"], p["setup"], float(p["rate"])): p for p in doc["points"]}
    rows = []
    for run_dir in find_measured(measured_root):
        parts = run_dir.relative_to(measured_root).parts
        rate = _rate_of(run_dir)
        if len(parts) < 3 or rate is None:
            continue
        key = (parts[-3], parts[-2], rate)  # <shape>/<setup>/<run>: the campaign's setup names
        if key not in predicted:
            continue
        res = RunResult.load(run_dir)
        m = measured_from(res, run_dir)
        s = res.summary
        mm = {"ttft_ms": m.ttft_ms, "tpot_ms": m.tpot_ms, "e2el_ms": m.e2el_ms}
        meas = figures(
            mm, (m.j_per_request, m.static_j_per_request, m.dynamic_j_per_request), m.completed_rps
        )
        pred = predicted[key]["predicted"]
        arrived = s.arrival_rate if s is not None else None
        done = departure_rate(res)
        hits = [x.prefix_cache_hit_rate for x in res.server_metrics.values() if x.prefix_cache_hit_rate]
        rows.append(
            {
                "shape": key[0],
                "setup": key[1],
                "rate": rate,
                "run": str(run_dir.relative_to(measured_root)),
                "requests": m.measured_requests,
                "failed": m.measured_requests - len(m.ttft_ms),
                "arrival_rate": arrived,
                "departure_rate": done,
                "saturated": bool(arrived and done and done < SATURATED * arrived),
                "prefix_hit_rate": {
                    "measured": hits[0] if hits else None,
                    "predicted": predicted[key]["prefix_hit_rate"],
                },
                "measured": dataclasses.asdict(meas),
                "predicted": pred,
                "error": {k: relative_error(pred[k], getattr(meas, k)) for k in METRICS},
            }
        )
    return sorted(rows, key=lambda r: (r["shape"], r["setup"], r["rate"]))


def comparison_markdown(doc: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        f"# Predictions vs measured: {doc['setup']}",
        "",
        f"Predictions: made {doc['made_utc']} (`{doc['command']}`)"
        + (
            f", after the runs: in-sample ({doc['in_sample']})"
            if doc.get("in_sample")
            else ", before the runs"
        )
        + ". Cells: measured / predicted (error).",
        f"Criterion: every metric within +-{TOLERANCE:.0%} at every point below saturation (requests left "
        f"at >= {SATURATED:.0%} of the rate they arrived at: (n - 1) / span of their ends, of their sends).",
        "",
        "| shape | rate | arrived / left (req/s) | sat. | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | "
        "TPOT p99 ms | "
        "E2E p50 ms | J/request | prefix hits | within |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = []
        for k in METRICS:
            meas, pred, err = r["measured"][k], r["predicted"][k], r["error"][k]
            e = "-" if err is None else f"{100 * err:+.0f}%"
            cells.append(f"{_ms(meas)} / {_ms(pred)} ({e})")
        ok = all(e is not None and abs(e) <= TOLERANCE for e in r["error"].values())
        hits = r["prefix_hit_rate"]
        hit_text = " / ".join("-" if h is None else f"{h:.0%}" for h in (hits["measured"], hits["predicted"]))
        lines.append(
            f"| {r['shape']} | {r['rate']:g} | {_ms(r['arrival_rate'], 2)} / {_ms(r['departure_rate'], 2)} | "
            f"{'yes' if r['saturated'] else 'no'} | {' | '.join(cells)} | {hit_text} | "
            f"{'n/a' if r['saturated'] else ('yes' if ok else '**no**')} |"
        )
    return "\n".join(lines) + "\n"


def cmd_compare(args: argparse.Namespace) -> int:
    doc = json.loads(Path(args.predictions).read_text())
    if doc.get("kind") != "point-predictions":
        raise ValueError(f"{args.predictions} is not a `planner points predict` file")
    rows = compare_rows(doc, Path(args.measured))
    if not rows:
        raise ValueError(f"no measured run under {args.measured} matches a prediction in {args.predictions}")
    out = Path(args.out or Path(args.predictions).parent)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(
        json.dumps({"predictions": str(args.predictions), "rows": rows}, indent=1)
    )
    text = comparison_markdown(doc, rows)
    (out / "comparison.md").write_text(text)
    print(text)
    return 0


def add_points_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "points", help="pre-registered predictions of a campaign's points, and their judgement"
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    pr = verbs.add_parser("predict", help="simulate every shape x rate the campaign will run")
    pr.add_argument("--profile", required=True, help="profile JSON, or 'illustrative'")
    pr.add_argument("--setup", default="single", help="single, replicas:N or xPyD")
    pr.add_argument("--shapes", required=True, help=f"comma-separated, of {', '.join(SHAPES)}")
    pr.add_argument("--rates", type=lambda t: [float(x) for x in t.split(",")], default=None)
    pr.add_argument("--num-requests", type=int, default=200, help="the campaign's --num-requests (a floor)")
    pr.add_argument("--max-model-len", type=int, default=None, help="the served context (trace clipping)")
    pr.add_argument("--out", type=Path, required=True, help="folder for predictions.md / .json")
    pr.add_argument(
        "--in-sample",
        default=None,
        metavar="WHY",
        help="predictions made after the points ran (a model changed by what they showed): says so, and why",
    )
    cp = verbs.add_parser("compare", help="measured runs beside their predictions")
    cp.add_argument("--predictions", required=True, help="predictions.json of `points predict`")
    cp.add_argument("--measured", required=True, help="the campaign's results folder")
    cp.add_argument("--out", default=None, help="folder for comparison.md / .json (default: beside them)")

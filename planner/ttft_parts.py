"""`python -m planner ttft-parts`: where measured TTFT goes, beside where the simulator puts it.

    python -m planner ttft-parts --profile results/profiles/h200-8b.json --measured results/h200x2/frontier \
        --before old/validation.json --after results/h200x2/frontier/planner-validation/validation.json

Two tables in one markdown file:
- parts: per aggregated run (one instance, replicas; P/D runs have analysis/ttft_sides.py), the mean
  TTFT split as vLLM's histograms see it (front end = TTFT - queue - prefill; queue + prefill = the
  engine's, from its first "scheduled"; client - vLLM = what lies outside vLLM's TTFT: HTTP and the
  chunk writes after it) beside the simulator's split with and without the profile's serving loop
  (API server in, engine: waiting and steps, output lag: the step's chunk writes before this one);
- errors: every run of two validation.json files (before, after): TTFT p50 / p99, TPOT p50 and J per
  request, (predicted - measured) / measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.markdown import md_table
from analysis.server_view import instance_views, pooled_mean
from experiments.schema import RunResult
from planner.measured import find_measured, measured_from
from planner.profile_model import Profile, ServingLoopModel, load_profile
from planner.simulate import simulate
from planner.validate import relative_error, replay_arrivals, run_limits


def add_ttft_parts_parser(sub: Any) -> None:
    p = sub.add_parser("ttft-parts", help="measured TTFT split by vLLM's histograms beside the simulator's",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--profile", type=Path, required=True, help="measured profile JSON")
    p.add_argument("--measured", type=Path, required=True, help="folder of measured runs")
    p.add_argument("--before", type=Path, required=True, help="validation.json of the earlier model")
    p.add_argument("--after", type=Path, required=True, help="validation.json of this model")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")


@dataclass(frozen=True)
class SimParts:
    """Mean ms of one replay: TTFT and its parts (API server in, engine, output lag)."""

    ttft: float
    api_in: float
    engine: float
    lag: float


@dataclass(frozen=True)
class PartsRow:
    run: str
    rate: float
    client_p50: float
    client: float  # means from here on, ms
    vllm_front: float | None
    vllm_engine: float | None  # queue + prefill
    outside: float | None  # client - vLLM TTFT
    old: SimParts
    new: SimParts


def _sim_parts(profile: Profile, run_dir: Path, res: RunResult) -> SimParts:
    m = measured_from(res, run_dir)
    limits, _ = run_limits(profile, m)
    arrivals, _ = replay_arrivals(m)
    sim = simulate(profile, m.setup, m.sent_prompt_tokens, m.sent_output_tokens, arrivals, limits, m.rate)
    api = sim.queued_s - sim.arrival_s  # aggregated: the API server, stretched while it streams
    lag = sim.first_token_s - sim.prefill_end_s  # the step ended, then its chunks
    ttft = sim.first_token_s - sim.arrival_s
    ms = 1e3
    return SimParts(ttft.mean() * ms, api.mean() * ms, (ttft - api - lag).mean() * ms, lag.mean() * ms)


def parts_row(profile: Profile, run_dir: Path, root: Path) -> PartsRow | None:
    """The row of one aggregated run; None for a P/D run."""
    res = RunResult.load(run_dir)
    if res.metadata.setup_kind == "xpyd":
        return None
    views = [v for v in instance_views(res) if v.error is None]
    ttft, queue, prefill = (pooled_mean(views, k) for k in ("ttft", "queue", "prefill"))
    engine = None if queue is None or prefill is None else queue + prefill
    client = np.array([r.ttft_ms for r in res.successes() if r.ttft_ms is not None])
    old = dataclasses.replace(profile, loop=ServingLoopModel())
    return PartsRow(
        run=str(run_dir.relative_to(root)),
        rate=float(res.metadata.config.arrival.rate or float("nan")),
        client_p50=float(np.median(client)),
        client=float(client.mean()),
        vllm_front=None if ttft is None or engine is None else ttft - engine,
        vllm_engine=engine,
        outside=None if ttft is None else float(client.mean()) - ttft,
        old=_sim_parts(old, run_dir, res),
        new=_sim_parts(profile, run_dir, res),
    )


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _pct(pred: float | None, meas: float | None) -> str:
    return "-" if (e := relative_error(pred, meas)) is None else f"{100 * e:+.0f}%"


def parts_table(rows: list[PartsRow]) -> list[str]:
    header = ["run", "req/s", "client p50", "client mean", "vLLM front end", "vLLM queue+prefill",
              "client - vLLM", "sim before: mean (API in / engine)",
              "sim now: mean (API in / engine / lag)"]  # fmt: skip
    body = [_parts_cells(r) for r in rows]
    return md_table(header, body)


def _parts_cells(r: PartsRow) -> list[str]:
    old, new = r.old, r.new
    return [r.run, f"{r.rate:g}", _f(r.client_p50), _f(r.client), _f(r.vllm_front), _f(r.vllm_engine),
            _f(r.outside), f"{old.ttft:.1f} ({old.api_in:.1f} / {old.engine:.1f})",
            f"{new.ttft:.1f} ({new.api_in:.1f} / {new.engine:.1f} / {new.lag:.1f})"]  # fmt: skip


def error_table(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Every run of `after`, with its errors in `before` -> `after`."""
    old = {p["run"]: p for p in before["points"]}
    header = ["run", "setup", "req/s", "TTFT p50 ms (measured)", "TTFT p50 error", "TTFT p99 error",
              "TPOT p50 error", "J error"]  # fmt: skip
    body = []
    for p in after["points"]:
        o, m = old.get(p["run"]), p["measured"]

        def both(key: str, p: dict[str, Any] = p, o: dict[str, Any] | None = o, m: dict[str, Any] = m) -> str:
            was = _pct(o["predicted"][key], m[key]) if o else "-"
            return f"{was} -> {_pct(p['predicted'][key], m[key])}"

        j_was = "-" if not o or o["j_error"] is None else f"{100 * o['j_error']:+.1f}%"
        j_now = "-" if p["j_error"] is None else f"{100 * p['j_error']:+.1f}%"
        body.append([p["run"], p["setup"], f"{p['rate']:g}", _f(m["ttft_p50_ms"]), both("ttft_p50_ms"),
                     both("ttft_p99_ms"), both("tpot_p50_ms"), f"{j_was} -> {j_now}"])  # fmt: skip
    return md_table(header, body)


def _median_abs(points: list[dict[str, Any]], key: str) -> str:
    def error(p: dict[str, Any]) -> float | None:
        return p["j_error"] if key == "j" else relative_error(p["predicted"][key], p["measured"][key])

    errs = [abs(e) for p in points if (e := error(p)) is not None]
    return f"{100 * float(np.median(errs)):.0f}%" if errs else "-"


def summary_table(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Median |error| per shape and setup, before -> after."""
    groups: dict[tuple[str, str], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for i, doc in enumerate((before, after)):
        for p in doc["points"]:
            groups.setdefault((p["shape"], p["setup"]), ([], []))[i].append(p)
    keys = (("ttft_p50_ms", "TTFT p50"), ("ttft_p99_ms", "TTFT p99"), ("tpot_p50_ms", "TPOT p50"), ("j", "J"))
    header = ["shape", "setup", "runs"] + [f"median abs {label} error" for _, label in keys]
    body = [
        [shape, setup, str(len(b))] + [f"{_median_abs(a, k)} -> {_median_abs(b, k)}" for k, _ in keys]
        for (shape, setup), (a, b) in sorted(groups.items())
    ]
    return md_table(header, body)


def cmd_ttft_parts(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    rows = [r for d in find_measured(args.measured) if (r := parts_row(profile, d, args.measured))]
    before, after = (json.loads(Path(p).read_text()) for p in (args.before, args.after))
    lines = ["## Measured TTFT parts beside the simulator's (means, ms)", "", *parts_table(rows), "",
             "## Median errors by shape and setup, before -> after", "", *summary_table(before, after), "",
             "## Errors per run, before -> after", "", *error_table(before, after), ""]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} ({len(rows)} aggregated runs, {len(after['points'])} runs)")
    return 0

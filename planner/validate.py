"""Prove the planner against measured sweeps: replay every measured run in the simulator, side by side.

For each run under a folder (planner/measured.py reads it) the simulator gets the same workload: the
lengths each request was drawn with, arrival offsets from the runner's own schedule with the run's
arrival process and seed (checked against the offsets the client recorded), the same setup and
selection policy, and the engine limits the instances were launched with where the run recorded them.
Energy is compared over the window the run was metered over (it opens before the first send).

Per run: TTFT / TPOT p50 and p99, SLO attainment at each SLO of a grid, J per request (static +
dynamic, serving GPUs: a single instance's idle neighbour is not counted, as the simulator has one
GPU), measured against predicted, with the J-per-request criterion (default within 10%) marked. Per
setup, shape and SLO: the SLO-sustaining rate of the measured and of the simulated sweep, both by
`analysis.sustained.sustained_rate` (the rule the frontier uses) over the same points, with the rate
criterion (default within 15%, planner/sustained.py). The points are the sweep's nominal rates, repeats
pooled as in the frontier (attainment over all their requests), placed on the REALIZED offered-rate
axis: the mean `summary.arrival_rate` of the measured runs at that rate (the nominal where a run recorded
none, noted). The predicted side stands on the same axis: its replay sends the same arrival offsets
(checked against the recorded schedule), so its realized rate is the measured run's. So the measured
sustained rate is the frontier's for the same runs. Failed requests count as missing every SLO.
Nothing is dropped: misses and runs that cannot be replayed are listed with the reason.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.sustained import SustainedRate, SweepPoint, offered_rate, sustained_rate
from experiments.metrics import compute_summary
from experiments.schema import Distribution, RunResult, SchemaError, to_builtins
from experiments.schema.run_warning import COALESCED_CHUNKS, NOT_STEADY, PREFIX_CACHE, SEND_LATENESS
from experiments.slo import slo_met
from planner.measured import MeasuredResultError, MeasuredRun, find_measured, measured_from
from planner.outcome import Outcome, request_metrics, summarize
from planner.profile_model import EngineLimits, Profile
from planner.simulate import SimulationError, simulate
from planner.sustained import RateAgreement, compare_rates
from planner.workload import fixed_lengths

# Warnings of a measured run that make it a weaker judge of a prediction (see experiments.schema).
JUDGE_WARNINGS = (NOT_STEADY, COALESCED_CHUNKS, SEND_LATENESS, PREFIX_CACHE)
ARRIVAL_MATCH_S = 1e-3  # regenerated vs recorded schedule: larger gaps are noted


def slo_cells(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's bounds, e.g. {ttft: (250, 500), tpot: (10,)} -> 2 SLOs."""
    keys = list(grid)
    return [dict(zip(keys, map(float, values), strict=True)) for values in itertools.product(*grid.values())]


def slo_label(slo: Mapping[str, float]) -> str:
    return " ".join(f"{k}<={v:g}" for k, v in slo.items())


@dataclass(frozen=True)
class Figures:
    """One side (measured or predicted) of a run: latency percentiles (ms) and energy per request (J)."""

    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tpot_p50_ms: float | None
    tpot_p99_ms: float | None
    j_per_request: float | None
    static_j_per_request: float | None
    dynamic_j_per_request: float | None
    throughput_rps: float | None
    e2el_p50_ms: float | None = None


def figures(metrics: Mapping[str, np.ndarray], j: tuple[float | None, ...], rps: float | None) -> Figures:
    """A side's Figures from its per-request ttft_ms, tpot_ms (NaN for one token) and e2el_ms."""
    tpot = metrics["tpot_ms"]
    t, p = Distribution.of(metrics["ttft_ms"]), Distribution.of(tpot[~np.isnan(tpot)])
    return Figures(t.p50, t.p99, p.p50, p.p99, *j, rps, Distribution.of(metrics["e2el_ms"]).p50)


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    return None if predicted is None or not measured else (predicted - measured) / measured


@dataclass(frozen=True)
class PointComparison:
    """One measured run and its replay."""

    shape: str
    setup: str
    gpus: int
    rate: float
    run: str  # the run directory, relative to the measured folder
    requests: int
    measured: Figures
    predicted: Figures
    attainment: dict[str, tuple[float, float]]  # SLO label -> (measured, predicted)
    j_error: float | None  # (predicted - measured) / measured
    j_pass: bool | None  # None: no energy on one side
    notes: tuple[str, ...] = ()
    arrived_rps: float | None = None  # the rate the measured run's requests arrived at (summary.arrival_rate)


@dataclass(frozen=True)
class RateComparison:
    """The SLO-sustaining rate of one setup's sweep, measured and predicted over the same points."""

    shape: str
    setup: str
    gpus: int
    slo: dict[str, float]
    rates: tuple[float, ...]  # nominal (the labels)
    offered: tuple[float, ...]  # the axis: realized offered rates (nominal where none), by nominal rate
    measured: SustainedRate
    predicted: SustainedRate
    agreement: RateAgreement

    @property
    def slo_label(self) -> str:
        return slo_label(self.slo)


@dataclass(frozen=True)
class Skipped:
    run: str
    reason: str


@dataclass
class Validation:
    profile: Profile
    measured_root: str
    slos: list[dict[str, float]]
    target: float
    rate_tolerance: float
    j_tolerance: float
    points: list[PointComparison] = field(default_factory=list)
    rates: list[RateComparison] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Pass / miss (/ undetermined, n/a) counts of both criteria."""
        j = {"pass": 0, "miss": 0, "n/a": 0}
        for p in self.points:
            j["n/a" if p.j_pass is None else "pass" if p.j_pass else "miss"] += 1
        r = {"pass": 0, "miss": 0, "undetermined": 0}
        for c in self.rates:
            r[c.agreement.verdict] += 1
        return {"j_per_request": j, "sustained_rate": r}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "planner-validation",
            "profile": dataclasses.asdict(self.profile.provenance),
            "profile_description": self.profile.describe(),
            "measured_root": self.measured_root,
            "slos": self.slos,
            "target_attainment": self.target,
            "criteria": {
                "sustained_rate_within": self.rate_tolerance,
                "j_per_request_within": self.j_tolerance,
            },
            "counts": self.counts(),
            "points": [to_builtins(p) for p in self.points],
            "sustained_rates": [
                {**to_builtins(c), "measured_text": c.measured.text(), "predicted_text": c.predicted.text()}
                for c in self.rates
            ],
            "skipped": [to_builtins(s) for s in self.skipped],
        }


def shape_of(run_dir: Path, root: Path, m: MeasuredRun) -> str:
    """.../<shape>/<setup>/<run>: the shape folder's name, else the workload's lengths."""
    parts = run_dir.relative_to(root).parts
    if len(parts) >= 3:
        return parts[-3]
    w = m.workload
    return f"{w.kind} {w.input_len} in / {w.output_len} out"


def run_limits(profile: Profile, m: MeasuredRun) -> tuple[EngineLimits, list[str]]:
    """The profile's engine limits, replaced by those the run's instances recorded."""
    e, r = profile.engine, m.engine
    limits = EngineLimits(
        r.max_num_batched_tokens or e.max_num_batched_tokens,
        r.max_num_seqs or e.max_num_seqs,
        r.kv_capacity_tokens or e.kv_capacity_tokens,
        e.block_size,
        "the measured run's instances",
    )
    notes = [
        f"{name} {getattr(limits, name)} as the run's instances (profile: {getattr(e, name)})"
        for name in ("max_num_batched_tokens", "max_num_seqs", "kv_capacity_tokens")
        if getattr(limits, name) != getattr(e, name)
    ]
    return limits, notes


def replay_arrivals(m: MeasuredRun) -> tuple[np.ndarray, list[str]]:
    """Arrival offsets of the run: the runner's schedule with its arrival process and seed."""
    a = m.arrival
    if a.kind == "closed":
        raise SimulationError("closed-loop users are not simulated (open-loop and trace arrivals only)")
    if a.kind == "trace" or a.rate is None:
        return m.scheduled_s, []
    workload = fixed_lengths(m.sent_prompt_tokens.tolist(), m.sent_output_tokens.tolist())
    arrivals = workload.arrivals(a.kind, a.rate, a.burstiness, a.seed)
    recorded = m.scheduled_s
    if len(recorded) == len(arrivals) and np.all(np.isfinite(recorded)):
        gap = float(np.max(np.abs((arrivals - arrivals[0]) - recorded)))
        if gap > ARRIVAL_MATCH_S:
            return arrivals, [f"regenerated arrivals differ from the recorded schedule by up to {gap:.3f} s"]
    return arrivals, []


def _measured_metrics(m: MeasuredRun) -> dict[str, np.ndarray]:
    return {"ttft_ms": m.ttft_ms, "tpot_ms": m.tpot_ms, "e2el_ms": m.e2el_ms}


def compare_point(
    profile: Profile,
    m: MeasuredRun,
    shape: str,
    run: str,
    slos: Sequence[Mapping[str, float]],
    j_tol: float,
    arrived_rps: float | None = None,
) -> PointComparison:
    limits, notes = run_limits(profile, m)
    arrivals, arrival_notes = replay_arrivals(m)
    sim = simulate(profile, m.setup, m.sent_prompt_tokens, m.sent_output_tokens, arrivals, limits, m.rate)
    window = None if m.energy_lead_s is None else m.energy_lead_s + float(np.max(sim.end_s) - arrivals[0])
    metrics = request_metrics(sim)
    out: Outcome = summarize(sim, profile.power, None, window, metrics)
    e = out.energy
    predicted = figures(
        metrics, (e.j_per_request, e.static_j_per_request, e.dynamic_j_per_request), out.throughput_rps
    )
    mm = _measured_metrics(m)
    measured = figures(
        mm, (m.j_per_request, m.static_j_per_request, m.dynamic_j_per_request), m.completed_rps
    )
    attainment = {
        slo_label(slo): (
            float(slo_met(mm, slo).sum()) / m.measured_requests,
            float(slo_met(metrics, slo).mean()),
        )
        for slo in slos
    }
    j_err = relative_error(predicted.j_per_request, measured.j_per_request)
    failed = m.measured_requests - len(m.ttft_ms)
    if failed:
        notes.append(f"{failed} measured request(s) failed: they miss every SLO")
    notes += [
        f"the measured run warns {w.code}"
        + ("" if w.observed is None else f" ({w.observed:.3g} against {w.threshold:g})")
        + ": the measurement, not the simulator, may be off here"
        for w in m.warnings
        if w.code in JUDGE_WARNINGS
    ]
    return PointComparison(
        shape=shape,
        setup=m.setup.name,
        gpus=m.setup.gpus,
        rate=float(m.rate) if m.rate is not None else float("nan"),
        run=run,
        requests=m.measured_requests,
        measured=measured,
        predicted=predicted,
        attainment=attainment,
        j_error=j_err,
        j_pass=None if j_err is None else abs(j_err) <= j_tol,
        notes=tuple(notes + arrival_notes),
        arrived_rps=arrived_rps,
    )


def sweep_points(pts: Sequence[PointComparison], label: str) -> tuple[list[SweepPoint], list[SweepPoint]]:
    """The measured and the predicted sweep at one SLO: one point per nominal rate, repeats pooled
    (attainment over all their requests), on the realized offered-rate axis of the measured runs."""
    by_rate: dict[float, list[PointComparison]] = {}
    for p in pts:
        by_rate.setdefault(p.rate, []).append(p)
    measured, predicted = [], []
    for rate, reps in sorted(by_rate.items()):
        axis, realized = offered_rate(rate, [p.arrived_rps for p in reps])
        n = sum(p.requests for p in reps)
        for side, out in ((0, measured), (1, predicted)):
            att = sum(p.attainment[label][side] * p.requests for p in reps) / n
            out.append(SweepPoint(rate, axis, att, realized))
    return measured, predicted


def compare_rates_of(
    points: Sequence[PointComparison], slos: Sequence[Mapping[str, float]], target: float, tol: float
) -> list[RateComparison]:
    """Per shape, setup and SLO: the sustained rate of the measured and the predicted sweep."""
    groups: dict[tuple[str, str], list[PointComparison]] = {}
    for p in points:
        if not np.isnan(p.rate):  # an unknown rate (a trace at its own pace) is no sweep point
            groups.setdefault((p.shape, p.setup), []).append(p)
    out = []
    for (shape, setup), pts in groups.items():
        for slo in slos:
            measured_pts, predicted_pts = sweep_points(pts, slo_label(slo))
            measured = sustained_rate(measured_pts, target)
            predicted = sustained_rate(predicted_pts, target)
            out.append(
                RateComparison(
                    shape,
                    setup,
                    pts[0].gpus,
                    dict(slo),
                    tuple(p.nominal for p in measured_pts),
                    tuple(p.rate for p in measured_pts),
                    measured,
                    predicted,
                    compare_rates(measured, predicted, tol),
                )
            )
    return out


def validate(
    profile: Profile,
    root: str | Path,
    slos: Sequence[Mapping[str, float]],
    target: float = 0.9,
    rate_tolerance: float = 0.15,
    j_tolerance: float = 0.10,
    progress: Callable[[str], None] | None = None,
) -> Validation:
    root = Path(root)
    runs = find_measured(root)
    if not runs:
        raise ValueError(f"no measured runs (result.json or result.json.xz) under {root}")
    v = Validation(profile, str(root), [dict(s) for s in slos], target, rate_tolerance, j_tolerance)
    for run_dir in runs:
        rel = str(run_dir.relative_to(root))
        try:
            res = RunResult.load(run_dir)
            m = measured_from(res, run_dir)
            arrived = compute_summary(res.records).arrival_rate  # from the records, as the frontier reads it
            point = compare_point(profile, m, shape_of(run_dir, root, m), rel, slos, j_tolerance, arrived)
        except (MeasuredResultError, SchemaError, SimulationError, FileNotFoundError) as exc:
            v.skipped.append(Skipped(rel, str(exc)))
            continue
        v.points.append(point)
        if progress:
            j = "-" if point.j_error is None else f"{100 * point.j_error:+.1f}%"
            progress(f"{rel}: {point.setup} at {point.rate:g} req/s, J/request {j}")
    v.points.sort(key=lambda p: (p.shape, p.setup, p.rate))
    v.rates = compare_rates_of(v.points, slos, target, rate_tolerance)
    return v

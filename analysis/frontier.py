"""SLO frontiers: per serving setup, the highest offered rate that keeps a share of requests within a
TTFT and a TPOT bound, per GPU and per kW, and which setup wins each SLO cell (DistServe's goodput per
GPU; Splitwise's gains at equal power).

Per rate point, SLO attainment = the share of measured requests (failed ones count as misses) whose TTFT
and TPOT are both within the bounds (a one-token request passes TPOT, as in vLLM). For one cell and
attainment level L, the sustained rate is `analysis.sustained.sustained_rate`, the one rule the planner's
validation uses too: the highest measured rate meeting L, interpolated linearly toward the next rate above
it; "never met" when no rate meets it; ">= max rate" when the highest rate still does (a lower bound).
The rate axis is the realized offered rate (each run's `summary.arrival_rate`, averaged over the repeats
of one nominal rate; the nominal where a run recorded none, noted). Average power is interpolated the
same way; per kW = sustained rate / (power / 1000).

One GPU count for every figure: a setup is charged for the GPUs it serves on (`GPU_SCOPE`). Per GPU
divides by the setup's GPUs, and per kW and the energy figures count those GPUs' counter energy and
power; a GPU the host monitored but the setup left idle (GPU 1 beside one instance) is in neither.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from analysis.comparability import hardware, model_name
from analysis.runs import CompareError, Run
from analysis.setup_sweeps import by_setup, check_sweep_setups, one_shape, shape_text
from analysis.sustained import SustainedRate, SweepPoint, offered_rate, sustained_rate
from experiments.metrics import slo_arrays
from experiments.schema import Scope
from experiments.schema.run_warning import NOT_STEADY
from experiments.slo import DEFAULT_SLO_GRID, parse_slo_grid, slo_met
from experiments.timing_checks import STEADY_ARRIVALS_IN_E2E, steady_state_warning

DEFAULT_TTFT_MS: tuple[float, ...] = tuple(map(float, DEFAULT_SLO_GRID["ttft"]))
DEFAULT_TPOT_MS: tuple[float, ...] = tuple(map(float, DEFAULT_SLO_GRID["tpot"]))
DEFAULT_ATTAINMENT = 0.9
Status = Literal["never met", "bracketed", "never saturated"]
Metric = Literal["per_gpu", "per_kw"]
GPU_SCOPE: Scope = "serving_gpus"  # the GPUs a setup is charged for, in every figure


@dataclass(frozen=True)
class SloGrid:
    """TTFT bounds x TPOT bounds (ms), each ascending."""

    ttft_ms: tuple[float, ...] = DEFAULT_TTFT_MS
    tpot_ms: tuple[float, ...] = DEFAULT_TPOT_MS

    @classmethod
    def parse(cls, text: str) -> SloGrid:
        """'ttft=250,500,1000 tpot=10,25' (ms; experiments.slo.parse_slo_grid); a key left out keeps its
        default bounds."""
        grid = parse_slo_grid(text)
        if "e2e" in grid:
            raise ValueError("the frontier's SLO grid is TTFT x TPOT: leave e2e out")
        return cls(grid.get("ttft", DEFAULT_TTFT_MS), grid.get("tpot", DEFAULT_TPOT_MS))

    @property
    def cells(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(len(self.ttft_ms)) for j in range(len(self.tpot_ms))]

    def text(self, i: int, j: int) -> str:
        return f"TTFT ≤ {self.ttft_ms[i]:g} ms, TPOT ≤ {self.tpot_ms[j]:g} ms"


@dataclass
class RatePoint:
    """One offered rate of a setup: its runs (repeats pooled), attainment per cell, power and energy."""

    rate: float
    runs: list[Run]
    attainment: np.ndarray  # [ttft bound, tpot bound] -> share of measured requests
    measured: int
    achieved_rps: float | None
    arrived_rps: float | None  # the realized arrival rate (mean over the pooled runs), beside the nominal
    offered_rps: float  # the sustained-rate axis: arrived_rps, or the nominal rate where a run has none
    avg_power_w: float | None  # the setup's GPUs (GPU_SCOPE), mean over the pooled runs
    energy_j: float | None  # the setup's GPUs, summed over the pooled runs; static + dynamic
    static_j: float | None
    dynamic_j: float | None
    completed: int
    output_tokens: int

    def per(self, part: str, denominator: str) -> float | None:
        """`part` (energy_j, static_j, dynamic_j) per completed request or per output token."""
        value = getattr(self, part)
        count = self.completed if denominator == "request" else self.output_tokens
        return value / count if value is not None and count else None

    @property
    def realized(self) -> bool:
        return self.arrived_rps is not None

    def sweep_point(self, i: int, j: int) -> SweepPoint:
        """This point at SLO cell (i, j), on the realized offered-rate axis."""
        return SweepPoint(self.rate, self.offered_rps, float(self.attainment[i, j]), self.realized)


STATUS: dict[str, Status] = {"below": "never met", "interpolated": "bracketed", "at_least": "never saturated"}


@dataclass
class Capacity:
    """The highest rate one setup sustains at one SLO cell (`sustained_rate`), its power and GPUs."""

    sustained: SustainedRate
    power_w: float | None
    num_gpus: int

    @property
    def status(self) -> Status:
        return STATUS[self.sustained.bound]

    @property
    def rate(self) -> float | None:
        """Interpolated; the highest measured rate (a lower bound) when never saturated; None: never met."""
        return None if self.sustained.bound == "below" else self.sustained.rate

    @property
    def low(self) -> SweepPoint | None:
        """The highest point meeting the level."""
        return self.sustained.passing

    @property
    def high(self) -> SweepPoint | None:
        """The next point above it (the lowest point when never met)."""
        return self.sustained.failing

    @property
    def non_monotone(self) -> bool:
        return self.sustained.non_monotone

    @property
    def lower_bound(self) -> bool:
        return self.status == "never saturated"

    @property
    def per_gpu(self) -> float:
        return 0.0 if self.rate is None else self.rate / self.num_gpus

    @property
    def per_kw(self) -> float | None:
        if self.rate is None:
            return 0.0
        return self.rate / (self.power_w / 1000) if self.power_w else None

    def value(self, metric: Metric) -> float | None:
        return self.per_gpu if metric == "per_gpu" else self.per_kw


@dataclass
class Verdict:
    """Which setup leads one SLO cell on one metric, and by how much over the runner-up.

    qualifier: exact; at least (the leader never saturated: its value is a lower bound); at most (the
    runner-up never saturated: it may lead); unknown (both never saturated); only (no other setup meets
    the cell); tie; none (no setup meets it); alone (one setup).
    """

    leader: str | None
    runner_up: str | None
    ratio: float | None
    qualifier: str
    values: tuple[float | None, float | None] = (None, None)  # the leader's and the runner-up's


@dataclass
class SetupSweep:
    """One setup's rate points (ascending) and its GPU count."""

    name: str
    kind: str
    num_gpus: int
    gpus_source: str
    points: list[RatePoint]

    @property
    def rates(self) -> list[float]:
        """The nominal rates (labels)."""
        return [p.rate for p in self.points]

    @property
    def offered(self) -> list[float]:
        """The sustained-rate axis: each point's realized offered rate (nominal where none is known)."""
        return [p.offered_rps for p in self.points]


@dataclass
class Frontier:
    shape: str
    model: str | None
    hardware: str
    grid: SloGrid
    level: float
    setups: list[SetupSweep]
    capacity: dict[tuple[str, int, int], Capacity]  # (setup, i, j)
    verdicts: dict[tuple[Metric, int, int], Verdict]
    notes: list[str] = field(default_factory=list)
    excluded: list[tuple[Run, str]] = field(default_factory=list)


def attainment_table(metrics: dict[str, np.ndarray], grid: SloGrid) -> np.ndarray:
    """[i, j] = share of requests meeting TTFT <= ttft_ms[i] and TPOT <= tpot_ms[j] (`slo_met`; `metrics`:
    `slo_arrays` of every measured request, so a failed one misses)."""
    table = np.full((len(grid.ttft_ms), len(grid.tpot_ms)), np.nan)
    if metrics["ttft_ms"].size:
        for i, ttft in enumerate(grid.ttft_ms):
            for j, tpot in enumerate(grid.tpot_ms):
                table[i, j] = slo_met(metrics, {"ttft": ttft, "tpot": tpot}).mean()
    return table


def _sum(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]


def rate_point(rate: float, runs: list[Run], grid: SloGrid) -> RatePoint:
    arrays = [slo_arrays(r.result.measured()) for r in runs]
    metrics = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]}
    totals = [r.totals(GPU_SCOPE) for r in runs]
    achieved = [r.summary.request_throughput for r in runs]
    offered, realized = offered_rate(rate, [r.summary.arrival_rate for r in runs])
    powers = [t.avg_power_w if t is not None else None for t in totals]
    return RatePoint(
        rate=rate,
        runs=runs,
        attainment=attainment_table(metrics, grid),
        measured=int(metrics["ttft_ms"].size),
        achieved_rps=None if None in achieved else float(np.mean(achieved)),  # type: ignore[arg-type]
        arrived_rps=offered if realized else None,
        offered_rps=offered,
        avg_power_w=None if None in powers else float(np.mean(powers)),  # type: ignore[arg-type]
        energy_j=_sum([t.energy_j if t is not None else None for t in totals]),
        static_j=_sum([t.static_j if t is not None else None for t in totals]),
        dynamic_j=_sum([t.dynamic_j if t is not None else None for t in totals]),
        completed=sum(r.summary.completed for r in runs),
        output_tokens=sum(r.summary.total_output_tokens for r in runs),
    )


def capacity(
    points: Sequence[SweepPoint], powers: Sequence[float | None], level: float, num_gpus: int
) -> Capacity:
    """The sustained rate at `level` (`sustained_rate`), with the power at it interpolated alike;
    `powers` go with `points`, one each."""
    try:
        s = sustained_rate(points, level)
    except ValueError as exc:  # two nominal rates that arrived at the same realized rate
        raise CompareError(f"{exc}; keep one run per realized rate (or rerun one at a new rate)") from exc
    power = None
    if s.passing is not None:
        p0 = powers[points.index(s.passing)]
        p1 = None if s.failing is None else powers[points.index(s.failing)]
        if s.failing is None:
            power = p0
        elif p0 is not None and p1 is not None:
            power = p0 + s.fraction * (p1 - p0)
    return Capacity(s, power, num_gpus)


def verdict(values: dict[str, tuple[float | None, bool]]) -> Verdict:
    """Leader and ratio to the runner-up from {setup: (value, is a lower bound)}; None values skipped."""
    ranked = sorted(
        ((v, lb, name) for name, (v, lb) in values.items() if v is not None), key=lambda t: (-t[0], not t[1])
    )
    if not ranked or ranked[0][0] <= 0:
        return Verdict(None, None, None, "none")
    lead_v, lead_lb, lead = ranked[0]
    if len(ranked) == 1:
        return Verdict(lead, None, None, "alone", (lead_v, None))
    run_v, run_lb, runner = ranked[1]
    if run_v <= 0:
        return Verdict(lead, runner, math.inf, "only", (lead_v, run_v))
    ratio = lead_v / run_v
    if lead_lb and run_lb:
        qualifier = "unknown"
    elif run_lb:
        qualifier = "at most"
    elif lead_lb:
        qualifier = "at least"
    else:
        qualifier = "tie" if abs(ratio - 1) < 1e-9 else "exact"
    return Verdict(lead, runner, ratio, qualifier, (lead_v, run_v))


def _usable(runs: Sequence[Run]) -> tuple[list[Run], list[tuple[Run, str]]]:
    kept, out = [], []
    for run in runs:
        kind, value = run.load
        if not run.complete:
            out.append((run, f"incomplete (status {run.status})"))
        elif kind != "rate" or value is None or math.isinf(value):
            out.append((run, f"load {run.load_text} is not a finite offered rate"))
        elif not run.result.measured():
            out.append((run, "no measured requests"))
        else:
            kept.append(run)
    return kept, out


def setup_sweep(name: str, runs: list[Run], grid: SloGrid) -> SetupSweep:
    count, source = runs[0].gpu_count()
    if count is None:
        raise CompareError(
            f"cannot tell how many GPUs setup '{name}' uses ({source}, {runs[0].path}); "
            "rerun with the launcher so the result records its serving setup"
        )
    rates: dict[float, list[Run]] = {}
    for run in runs:
        rates.setdefault(float(run.load[1]), []).append(run)  # type: ignore[arg-type]
    points = [rate_point(rate, rates[rate], grid) for rate in sorted(rates)]
    return SetupSweep(name, runs[0].setup_kind, count, source, points)


def _not_steady(run: Run) -> bool:
    """The run's stored not_steady warning; runs written before the runner checked are checked now."""
    return any(w.code == NOT_STEADY for w in run.result.warnings) or (
        steady_state_warning(run.result.measured()) is not None
    )


def build_frontier(
    runs: Sequence[Run], grid: SloGrid | None = None, level: float = DEFAULT_ATTAINMENT, force: bool = False
) -> Frontier:
    """The frontier of runs of one workload shape; CompareError for several shapes, MixedSetups for a
    sweep that mixes setups (unless `force`, which leaves the odd runs out)."""
    grid = grid or SloGrid()
    if not 0 < level <= 1:
        raise CompareError(f"attainment level {level:g} is not in (0, 1]; give a share such as 0.9")
    usable, excluded = _usable(runs)
    if not usable:
        raise CompareError("no complete run at a finite offered rate; a frontier needs rate sweeps")
    usable = one_shape(usable)
    check = check_sweep_setups(usable, force)
    excluded += check.excluded
    setups = [setup_sweep(name, members, grid) for name, members in by_setup(check.kept).items()]
    cap: dict[tuple[str, int, int], Capacity] = {}
    notes = [f"{run.name} left out: {why}" for run, why in excluded]
    for s in setups:
        if s.gpus_source != "recorded":
            notes.append(f"{s.name}: {s.num_gpus} GPU(s), {s.gpus_source} (no GPU count recorded)")
        metered = {len(r.energy.scope(GPU_SCOPE)) for p in s.points for r in p.runs if r.totals(GPU_SCOPE)}
        if metered - {s.num_gpus}:
            counts = ", ".join(str(n) for n in sorted(metered))
            notes.append(f"{s.name}: {s.num_gpus} GPU(s) per GPU, but power and energy metered on {counts}")
        if len(s.points) < 2:
            notes.append(f"{s.name}: one rate only ({s.points[0].rate:g} req/s), nothing to interpolate")
        powers = [p.avg_power_w for p in s.points]
        dips = []
        if None in powers:
            notes.append(f"{s.name}: no measured power at some rates, per-kW values n/a there")
        nominal = [f"{p.rate:g}" for p in s.points if not p.realized]
        if nominal:
            notes.append(
                f"{s.name}: no realized arrival rate recorded at {', '.join(nominal)} req/s: those points "
                "stand at their nominal rate on the offered-rate axis"
            )
        for i, j in grid.cells:
            c = capacity([p.sweep_point(i, j) for p in s.points], powers, level, s.num_gpus)
            cap[(s.name, i, j)] = c
            if c.non_monotone:
                dips.append(grid.text(i, j))
        transient = [f"{p.rate:g}" for p in s.points if any(_not_steady(r) for r in p.runs)]
        if transient:
            notes.append(
                f"{s.name}: not a steady state at {', '.join(transient)} req/s (arrivals shorter than "
                f"{STEADY_ARRIVALS_IN_E2E:g} mean E2Es): attainment there is a ramp's, optimistic past "
                "saturation"
            )
        if dips:
            notes.append(
                f"{s.name}: attainment dips below {100 * level:g}% at a lower rate and recovers at a higher "
                f"one in {len(dips)} cell(s) ({'; '.join(dips)}); the highest rate meeting it is taken"
            )
    verdicts: dict[tuple[Metric, int, int], Verdict] = {}
    for metric in ("per_gpu", "per_kw"):
        for i, j in grid.cells:
            values = {
                s.name: (cap[(s.name, i, j)].value(metric), cap[(s.name, i, j)].lower_bound) for s in setups
            }
            verdicts[(metric, i, j)] = verdict(values)
    first = check.kept[0]
    return Frontier(
        shape=shape_text(check.kept),
        model=model_name(first),
        hardware=hardware(first),
        grid=grid,
        level=level,
        setups=setups,
        capacity=cap,
        verdicts=verdicts,
        notes=notes,
        excluded=excluded,
    )

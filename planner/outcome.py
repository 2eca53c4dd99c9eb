"""What a simulated run means: vLLM-definition latencies, SLO attainment, goodput, joules per request.

Definitions are experiments.metrics' (vLLM `benchmarks/serve.py`): TTFT = first token - arrival, E2E =
last token - arrival, TPOT = (E2E - TTFT) / (output tokens - 1) for requests with more than one output
token; a request meets the SLO when every given limit holds, and one without a TPOT passes the TPOT
limit; goodput = requests meeting the SLO per second of the run (first arrival to last end);
distributions are the schema's `Distribution` (the statistics of measured runs). The simulator
sends requests at their scheduled time, so the sent time is the arrival time.

Energy (when the profile has a power model): static = idle W x window x GPUs, every GPU idling the
whole window as the measured runs count it (the window is the run's duration unless the caller gives
the one a measured run was metered over, see planner/validate.py); dynamic = sum over every step of
(state power - idle power) x step time, where a step with prefill work draws the prefill power and a
decode-only step the decode power at its batch size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from experiments.schema import Distribution, to_builtins
from experiments.slo import slo_met
from planner.profile_model import PowerModel
from planner.simulate import SimRun


def request_metrics(run: SimRun) -> dict[str, np.ndarray]:
    """ttft_ms, tpot_ms (NaN for one output token) and e2el_ms, one entry per request."""
    ttft = (run.first_token_s - run.arrival_s) * 1e3
    e2el = (run.end_s - run.arrival_s) * 1e3
    steps = run.output_tokens - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(steps > 0, (e2el - ttft) / np.maximum(steps, 1), np.nan)
    return {"ttft_ms": ttft, "tpot_ms": tpot, "e2el_ms": e2el}


@dataclass(frozen=True)
class EnergyEstimate:
    available: bool
    reason: str | None
    gpus: int
    duration_s: float
    static_j: float | None
    dynamic_j: float | None
    j_per_request: float | None
    static_j_per_request: float | None
    dynamic_j_per_request: float | None


def estimate_energy(run: SimRun, power: PowerModel, window_s: float | None = None) -> EnergyEstimate:
    """`window_s`: the metered window (default: the run's duration, first arrival to last end)."""
    gpus = run.setup.gpus
    duration = run.duration_s if window_s is None else window_s
    n = len(run.end_s)
    if not power.available or n == 0:
        reason = power.reason if not power.available else "no requests"
        return EnergyEstimate(False, reason, gpus, duration, None, None, None, None, None)
    assert power.idle_w is not None
    static = power.idle_w * duration * gpus
    dynamic = sum(s.dynamic_j for s in run.instances)
    return EnergyEstimate(
        True, None, gpus, duration, static, dynamic, (static + dynamic) / n, static / n, dynamic / n
    )


@dataclass(frozen=True)
class Outcome:
    """One setup at one rate."""

    setup: str
    gpus: int
    rate: float | None
    requests: int
    duration_s: float
    throughput_rps: float
    goodput_rps: float | None
    attainment: float | None
    slo: dict[str, float]
    ttft_ms: dict[str, Any]
    tpot_ms: dict[str, Any]
    e2el_ms: dict[str, Any]
    utilization: dict[str, float]  # mean busy fraction per role
    energy: EnergyEstimate
    local_share: float | None = None  # requests a per-request policy served on a decode instance alone
    prefix_hit_rate: float | None = None  # prompt tokens served from the prefix caches, all instances

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prefix_hit_rate(run: SimRun) -> float | None:
    """Prompt tokens the instances' prefix caches served over the prompt tokens looked up in them, all
    instances together (None: the run had no prompt blocks, so no cache)."""
    looked = sum(s.prefix_query_tokens for s in run.instances if s.prefix_hit_rate is not None)
    if not looked:
        return None
    hits = sum((s.prefix_hit_rate or 0.0) * s.prefix_query_tokens for s in run.instances)
    return hits / looked


def _distribution(values: np.ndarray) -> dict[str, Any]:
    return to_builtins(Distribution.of(values))


def with_slo(outcome: Outcome, metrics: Mapping[str, np.ndarray], slo: Mapping[str, float]) -> Outcome:
    """The same run judged at another SLO (`metrics`: its `request_metrics`)."""
    good = int(slo_met(metrics, slo).sum())
    d = outcome.duration_s
    return replace(
        outcome,
        slo=dict(slo),
        goodput_rps=good / d if d > 0 else 0.0,
        attainment=good / outcome.requests if outcome.requests else None,
    )


def summarize(
    run: SimRun,
    power: PowerModel,
    slo: Mapping[str, float] | None = None,
    window_s: float | None = None,
    metrics: Mapping[str, np.ndarray] | None = None,
) -> Outcome:
    """`window_s`: the energy window (see estimate_energy); `metrics`: `request_metrics(run)` if known."""
    slo = dict(slo or {})
    m = metrics if metrics is not None else request_metrics(run)
    n = len(run.end_s)
    duration = run.duration_s
    good = int(slo_met(m, slo).sum()) if slo else None
    busy: dict[str, list[float]] = {}
    for s in run.instances:
        busy.setdefault(s.role, []).append(s.busy_s / duration if duration > 0 else 0.0)
    tpot = m["tpot_ms"]
    return Outcome(
        setup=run.setup.name,
        gpus=run.setup.gpus,
        rate=run.rate,
        requests=n,
        duration_s=duration,
        throughput_rps=n / duration if duration > 0 else 0.0,
        goodput_rps=(good / duration if duration > 0 else 0.0) if good is not None else None,
        attainment=good / n if good is not None and n else None,
        slo=slo,
        ttft_ms=_distribution(m["ttft_ms"]),
        tpot_ms=_distribution(tpot[~np.isnan(tpot)]),
        e2el_ms=_distribution(m["e2el_ms"]),
        utilization={role: float(np.mean(v)) for role, v in busy.items()},
        energy=estimate_energy(run, power, window_s),
        local_share=float(np.mean(run.local)) if run.setup.disaggregated and run.local is not None else None,
        prefix_hit_rate=prefix_hit_rate(run),
    )

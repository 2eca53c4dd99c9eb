"""The highest rate a setup sustains at an SLO, and the search over xPyD ratios for a GPU count.

Sustained rate: the highest offered rate whose simulated SLO attainment is >= the target (90% by
default), found by bisection between 0 and the capacity bound below, to a relative precision (2% by
default). A finite run offered more than the capacity can still meet a loose SLO (the backlog has no
time to grow), so rates above the bound are never tried: they are overload by construction.
Goodput per GPU at the SLO = that rate / GPUs. Arrival offsets at every rate are the same seeded
draw scaled (gamma gaps scale with 1/rate), so attainment moves smoothly with the rate.

Upper bound (never below the true capacity, so pruning with it is safe): an instance cannot beat its
cheapest way to do the work. Per request, prefill costs at least a*L/budget (the step intercept shared
by a full budget) + b*L + c*L^2/2 (the attention pairs of any chunking of L tokens are >= L^2/2), and
each output token on a decode instance at least min over batches B of a/B + d*B (+ e*touched(B)/B for an
MoE model's experts term), plus b + c*L (B up to
max_batch, or where the batch^2 term d makes larger batches dearer); on an aggregated instance
decode tokens ride prefill steps at b + c*L. Under a per-request policy (testbed/route_rule.py) a
decode instance does the local requests' whole work at that aggregated cost: threshold splits a known
share of the requests; load and local may split any share f, and the bound takes the f that balances
the two sides (the most any routing could sustain). Setups are simulated in decreasing bound order and skipped
once their bound per GPU cannot reach the best few found.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.timing_checks import STEADY_ARRIVALS_IN_E2E, Ramp, find_ramp
from planner.outcome import Outcome, request_metrics, summarize, with_slo
from planner.profile_model import EngineLimits, Profile
from planner.setups import Setup, candidate_setups
from planner.simulate import simulate
from planner.workload import Workload, WorkloadSpec, build_workload
from testbed.route_rule import parse_route_policy

MAX_REPEATS = 8  # a ramp run is repeated up to this many times its workload to reach a steady state


@dataclass(frozen=True)
class SearchConfig:
    slo: dict[str, float]
    target: float = 0.9
    precision: float = 0.02
    arrival: str = "poisson"
    burstiness: float = 1.0
    seed: int = 0
    requests_per_gpu: int = 300
    min_requests: int = 2000

    def __post_init__(self) -> None:
        if not self.slo:
            raise ValueError("a search needs an SLO, e.g. ttft=500,tpot=25 (milliseconds)")
        if not 0 < self.target <= 1:
            raise ValueError(f"attainment target must be in (0, 1], got {self.target}")
        if self.arrival not in ("poisson", "gamma", "constant"):
            raise ValueError("a rate search needs open-loop arrivals: poisson, gamma or constant")


@dataclass(frozen=True)
class SetupResult:
    setup: Setup
    bound_rps: float
    sustained_rps: float
    at_sustained: Outcome | None  # the simulated run at the sustained rate (None: not even a low rate)
    simulations: int
    note: str = ""

    @property
    def goodput_per_gpu(self) -> float:
        return self.sustained_rps / self.setup.gpus

    @property
    def j_per_request(self) -> float | None:
        return self.at_sustained.energy.j_per_request if self.at_sustained else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": self.setup.name,
            "gpus": self.setup.gpus,
            "bound_rps": self.bound_rps,
            "sustained_rps": self.sustained_rps,
            "goodput_per_gpu": self.goodput_per_gpu,
            "j_per_request": self.j_per_request,
            "simulations": self.simulations,
            "note": self.note,
            "at_sustained": self.at_sustained.to_dict() if self.at_sustained else None,
        }


def capacity_bound(profile: Profile, setup: Setup, workload: Workload, limits: EngineLimits) -> float:
    """Requests/s no simulation of this setup can exceed (see the module docstring)."""
    pa, pb, pc = profile.prefill.terms
    _, db, dc, _ = profile.decode.terms
    L = workload.prompt_tokens.astype(float)
    out = workload.output_tokens.astype(float)
    blocks = np.ceil((L + out) / limits.block_size)
    max_batch = max(1.0, min(limits.max_num_seqs, limits.kv_capacity_blocks / float(np.mean(blocks))))
    budget = limits.max_num_batched_tokens
    per_prefill = pa * L / budget + pb * L + pc * L * L / 2
    graph = profile.prefill.eager_above
    if graph is not None and budget > graph:
        # Eager steps (planner/engine.py): a prompt's chunk is cut short only in a full step (budget >
        # graph tokens: eager), so at most its last chunk, <= graph tokens, runs in a graph step; its
        # other >= L - graph tokens share eager steps of <= budget tokens each, so it costs at least
        # e*(L - graph)/budget. Decode-only eager steps (batch > graph) are left out: a lower cost.
        per_prefill = per_prefill + profile.prefill.eager_s * np.maximum(L - graph, 0.0) / budget
    per_mixed = per_prefill + (out - 1) * (db + dc * L)
    if not setup.disaggregated:
        return setup.n_decode / float(np.mean(per_mixed))
    # A step of batch B costs each token da/B + dd*B (+ an MoE model's experts term / B) + db + dc*L:
    # its least share per token within the limits (planner/profile_model.py DecodeModel).
    per_decode = out * (profile.decode.token_floor_s(max_batch) + db + dc * L)
    route = parse_route_policy(setup.route)
    if route.kind != "split":  # split requests' decodes may ride a local prompt's prefill steps
        per_decode = out * (db + dc * L)
    if route.kind in ("split", "threshold"):  # the split requests are known: each side's share of work
        split = route.threshold <= L if route.kind == "threshold" else np.ones(len(L), dtype=bool)
        p_work = float(np.mean(np.where(split, per_prefill, 0.0)))
        d_work = float(np.mean(np.where(split, per_decode, per_mixed)))
        return min(_per(setup.n_prefill, p_work), _per(setup.n_decode, d_work))
    if route.kind == "local":
        return _per(setup.n_decode, float(np.mean(per_mixed)))
    return _best_split_bound(setup.n_prefill, setup.n_decode, per_prefill, per_decode, per_mixed)


def _per(instances: int, work_s: float) -> float:
    """Requests/s of `instances` doing `work_s` each (unbounded without work)."""
    return instances / work_s if work_s > 0 else math.inf


def _best_split_bound(n_p: int, n_d: int, p: np.ndarray, d: np.ndarray, m: np.ndarray) -> float:
    """The highest rate any choice of which requests split could sustain (load: the choice is the
    rule's, at run time). A split request costs the prefill side p and the decode side d, a local one
    the decode side m: split those that save the decode side most per prefill second first (a
    fractional knapsack), and take the best rate along that order, the crossing of both sides included."""
    n = len(p)
    order = np.argsort(-(m - d) / np.maximum(p, 1e-12))
    cum_p = np.concatenate(([0.0], np.cumsum(p[order]))) / n
    cum_d = (float(np.sum(m)) + np.concatenate(([0.0], np.cumsum(d[order] - m[order])))) / n
    with np.errstate(divide="ignore"):
        rates = np.minimum(np.where(cum_p > 0, n_p / cum_p, np.inf), np.where(cum_d > 0, n_d / cum_d, np.inf))
    best = float(np.max(rates))
    dp, dd = np.diff(cum_p), -np.diff(cum_d)  # within a segment both sides move linearly
    denom = n_p * dd + n_d * dp
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (n_p * cum_d[:-1] - n_d * cum_p[:-1]) / denom
    inside = (denom > 0) & (t >= 0) & (t <= 1)
    if np.any(inside):
        best = max(best, float(np.max(n_p / (cum_p[:-1][inside] + t[inside] * dp[inside]))))
    return best


def workload_for(spec: WorkloadSpec, gpus: int, cfg: SearchConfig) -> Workload:
    n = max(cfg.min_requests, cfg.requests_per_gpu * gpus, spec.num_requests)
    return build_workload(dataclasses.replace(spec, num_requests=n))


@dataclass(frozen=True)
class CachedRun:
    metrics: dict[str, np.ndarray]
    outcome: Outcome  # without an SLO
    ramp: Ramp | None  # a run too short for its load
    repeats: int = 1  # the workload's repeats in this run

    @property
    def steady(self) -> bool:
        """Arrivals lasted >= STEADY_ARRIVALS_IN_E2E mean E2Es, or the run is as long as allowed."""
        return self.ramp is None or self.repeats >= MAX_REPEATS


class RunCache:
    """One setup's simulated runs by rate, kept for every SLO of a grid: the SLO changes only which
    requests count, so bisections for several SLOs share the runs at the rates they have in common.

    A run whose arrivals last under STEADY_ARRIVALS_IN_E2E mean E2Es is a ramp, not the load: queues never
    fill, and a long-request shape seems to meet an SLO far past saturation (as the device's short runs
    did). Such a run that meets the target runs again on the workload repeated until it lasts long
    enough (at most MAX_REPEATS times). One that misses stays: a longer run would only miss by more.
    """

    def __init__(
        self, profile: Profile, setup: Setup, workload: Workload, cfg: SearchConfig, limits: EngineLimits
    ) -> None:
        self.profile, self.setup, self.workload, self.cfg, self.limits = profile, setup, workload, cfg, limits
        self.runs: dict[float, CachedRun] = {}
        self.simulations = 0

    def _run(self, rate: float, repeats: int = 1) -> CachedRun:
        """One simulated run; a trace's prompt blocks (`Workload.prefix`) feed the instances' prefix caches,
        as vLLM's prefix caching (on by default) serves the real replay. A repeated workload's repeats are
        new prompts with the trace's own reuse among them (`Workload.repeated` renumbers their blocks): the
        repeats stand for more traffic of the same kind, so the steady state is not bought with cache hits
        no replay of the trace would see (a second pass over the slice would find its blocks evicted
        anyway, the slice's prompts far exceeding an instance's KV pool)."""
        self.simulations += 1
        cfg = self.cfg
        workload = self.workload.repeated(repeats) if repeats > 1 else self.workload
        arrivals = workload.arrivals(cfg.arrival, rate, cfg.burstiness, cfg.seed)
        run = simulate(
            self.profile,
            self.setup,
            workload.prompt_tokens,
            workload.output_tokens,
            arrivals,
            self.limits,
            rate,
            prefix=workload.prefix,
        )
        metrics = request_metrics(run)
        outcome = summarize(run, self.profile.power, None, metrics=metrics)
        return CachedRun(metrics, outcome, find_ramp(arrivals, metrics["e2el_ms"]), repeats)

    def at(self, rate: float, slo: dict[str, float]) -> Outcome:
        if rate not in self.runs:
            self.runs[rate] = self._run(rate)
        cached = self.runs[rate]
        out = with_slo(cached.outcome, cached.metrics, slo)
        while not cached.steady and out.attainment is not None and out.attainment >= self.cfg.target:
            assert cached.ramp is not None
            ramp = cached.ramp
            need = math.ceil(1.2 * STEADY_ARRIVALS_IN_E2E * ramp.e2e_s / ramp.window_s * cached.repeats)
            repeats = min(MAX_REPEATS, max(need, 2 * cached.repeats))
            cached = self.runs[rate] = self._run(rate, repeats)
            out = with_slo(cached.outcome, cached.metrics, slo)
        return out


def sustained_rate(
    profile: Profile,
    setup: Setup,
    workload: Workload,
    cfg: SearchConfig,
    limits: EngineLimits | None = None,
    runs: RunCache | None = None,
) -> SetupResult:
    """`runs`: simulated runs of this setup and workload to reuse (see RunCache)."""
    limits = limits or profile.engine
    runs = runs or RunCache(profile, setup, workload, cfg, limits)
    bound = capacity_bound(profile, setup, workload, limits)
    sims = 0

    def ok(rate: float) -> Outcome | None:
        nonlocal sims
        sims += 1
        out = runs.at(rate, cfg.slo)
        assert out.attainment is not None
        return out if out.attainment >= cfg.target else None

    lo_rate = bound * cfg.precision
    best = ok(lo_rate)
    if best is None:
        note = f"attainment < {cfg.target:.0%} even at {lo_rate:.3g} req/s: the SLO is below unloaded latency"
        return SetupResult(setup, bound, 0.0, None, sims, note)
    lo, hi = lo_rate, bound
    while (hi - lo) / hi > cfg.precision:
        mid = (lo + hi) / 2
        out = ok(mid)
        if out is None:
            hi = mid
        else:
            lo, best = mid, out
    note = ""
    if hi == bound:
        note = "met the SLO up to the capacity bound: capacity, not the SLO, limits it"
    return SetupResult(setup, bound, lo, best, sims, note)


def search(
    profile: Profile,
    gpu_counts: Sequence[int],
    spec: WorkloadSpec,
    cfg: SearchConfig,
    top: int = 3,
    policy: str = "round_robin",
    limits: EngineLimits | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[int, list[SetupResult]]:
    """Per GPU count: the `top` setups by goodput per GPU at the SLO (simulated ones, best first)."""
    return search_grid(profile, gpu_counts, spec, cfg, [cfg.slo], top, policy, limits, progress)[0]


def search_grid(
    profile: Profile,
    gpu_counts: Sequence[int],
    spec: WorkloadSpec,
    cfg: SearchConfig,
    slos: Sequence[dict[str, float]],
    top: int = 3,
    policy: str = "round_robin",
    limits: EngineLimits | None = None,
    progress: Callable[[str], None] | None = None,
    setups_of: Callable[[int], Sequence[Setup]] | None = None,
    workload_of: Callable[[int], Workload] | None = None,
    known: Sequence[dict[int, list[SetupResult]]] | None = None,
) -> list[dict[int, list[SetupResult]]]:
    """`search` for every SLO of `slos` (one result per SLO, in order), each setup's runs shared.

    A setup is skipped once its capacity bound cannot reach the best few at any of the SLOs.
    `setups_of(gpus)`: the setups to consider (default: every one, `candidate_setups`);
    `workload_of(gpus)`: the workload simulated (default: `workload_for(spec, gpus, cfg)`);
    `known`: results of other setups on the same workload and SLOs (an earlier search_grid's): they
    rank and prune with the new ones, and the best few of both are returned."""
    limits = limits or profile.engine
    cfgs = [dataclasses.replace(cfg, slo=dict(slo)) for slo in slos]
    if known is not None and len(known) != len(cfgs):
        raise ValueError(f"known results for {len(known)} SLOs, but {len(cfgs)} SLOs to search")
    found: list[dict[int, list[SetupResult]]] = [{} for _ in cfgs]
    for gpus in gpu_counts:
        t0 = time.perf_counter()
        workload = workload_of(gpus) if workload_of else workload_for(spec, gpus, cfg)
        setups = setups_of(gpus) if setups_of else candidate_setups(gpus, policy)
        cands = sorted(
            ((capacity_bound(profile, s, workload, limits), s) for s in setups),
            key=lambda bs: -bs[0],
        )
        results: list[list[SetupResult]] = [list(k.get(gpus, [])) for k in known or [{} for _ in cfgs]]
        skipped = sims = 0
        for bound, setup in cands:
            if all(len(r) >= top and bound <= r[top - 1].sustained_rps for r in results):
                skipped += 1
                continue
            runs = RunCache(profile, setup, workload, cfg, limits)
            for one, r in zip(cfgs, results, strict=True):
                r.append(sustained_rate(profile, setup, workload, one, limits, runs))
                r.sort(key=lambda x: -x.sustained_rps)
            sims += runs.simulations
        for f, r in zip(found, results, strict=True):
            f[gpus] = r[:top]
        if progress:
            progress(
                f"{gpus} GPUs: {len(cands) - skipped} setups simulated ({sims} runs of {len(workload)} "
                f"requests), {skipped} ruled out by their capacity bound, {time.perf_counter() - t0:.1f} s"
            )
    return found

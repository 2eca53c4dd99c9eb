"""`python -m planner break-even`: where prefill/decode disaggregation pays, per model, workload, SLO and
GPU count, predicted from one-instance profiles.

For every model (a profile), workload (prefill-heavy 2048 -> 256, decode-heavy 512 -> 1024, the Azure
and Mooncake conversation traces' lengths at Poisson rates of our choosing), SLO of the grid and GPU
count: the best disaggregated setup (every xPyD ratio with x + y = GPUs, the profile's KV connector,
each under every per-request policy of `routes`: split, load, threshold:N) against the best aggregated
one (N replicas behind the proxy, or one instance: per GPU they are the same hardware), both by goodput
per GPU at the SLO (planner/search.py: the highest rate with >= 90% of requests meeting it). Per kW:
goodput over the setup's mean power at that rate (all its GPUs, idle included), the best of each
family's few best by goodput. Margin = P/D / aggregated - 1; a route's gain = the best P/D / the best
split P/D - 1.

Routes (`DEFAULT_ROUTES`): split (the P/D baseline), load at the proxy's default thresholds, and
threshold:pNN, just above the NN-th percentile of the workload's prompt lengths, so that about NN% of
its requests stay local (a fixed 512/1024/2048 would fall below or above every prompt of the fixed shapes
and of most of the Mooncake trace: a threshold splitting every request is split, one splitting none is
local, neither is searched again). Split setups are searched first; the routed ones are pruned by
their capacity bound against the best few of both (planner/search.py).

Trace workloads with prompt blocks (Mooncake's hash_ids) run with each instance's prefix cache
(planner/prefix_cache.py), as vLLM's prefix caching (on by default) serves them; each side records
its predicted hit rate at the sustained rate.

With SLO scales (`scales`, `--slo-scale 2,3,5,10`) in place of the absolute grid, each model's and
workload's SLOs are those multiples of one request's TTFT and TPOT alone at the workload's median
lengths (planner/slo_scale.py), so that models whose decode step alone differs 4x are compared at SLOs
each can meet; the cells then carry their scale, and the result the bounds it resolved to. A scale may
be a pair, (TTFT scale, TPOT scale): `--slo-scale "ttft=2,5,10 tpot=2,3"` maps their cross product.

Requests longer than `max_model_len` (prompt + output; the served context) are skipped and counted,
never clipped; the count is in the result.

    python -m planner break-even --profile llama-3.1-8b=results/profiles/h200-8b-nixl.json \
        --out results/planner/break-even
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.profile_model import Profile
from planner.search import SearchConfig, SetupResult, search_grid, workload_for
from planner.setups import Setup
from planner.simulate import Prefix
from planner.slo_scale import Scale, Unloaded, median_lengths, scale_coords, scale_key, scale_label, unloaded
from planner.validate import slo_label
from planner.workload import Workload, WorkloadSpec, from_specs
from testbed.route_rule import SPLIT, parse_route_policy

GPU_COUNTS = (2, 4, 8)
TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"  # ../shared/traces of the checkout
DEFAULT_MAX_MODEL_LEN = 32768  # the shortest native context of the four shapes (Qwen2.5-32B)
# The four model classes (experiments/model_dir.py shapes): a map without one of them says so.
MAP_MODELS = ("llama-3.1-8b", "qwen2.5-32b", "llama-3.1-70b-fp8", "qwen3-30b-a3b")
DEFAULT_ROUTES = ("split", "load", "threshold:p25", "threshold:p50", "threshold:p75")


@dataclass(frozen=True)
class MapWorkload:
    name: str
    spec: WorkloadSpec

    def describe(self) -> str:
        """The shape; a trace's rows give only lengths here (the map's arrivals are its searched rates)."""
        if self.spec.kind == "trace":
            return f"trace {self.spec.dataset}: its rows' lengths, arrivals at the searched rates"
        return self.spec.describe()


def default_workloads(traces: Path = TRACES) -> list[MapWorkload]:
    """The issue's four: two fixed shapes and the two conversation traces (lengths only; rates ours)."""
    return [
        MapWorkload("prefill-heavy", WorkloadSpec(kind="random", input_len=2048, output_len=256)),
        MapWorkload("decode-heavy", WorkloadSpec(kind="random", input_len=512, output_len=1024)),
        MapWorkload("azure-conv", WorkloadSpec(kind="trace", dataset=str(traces / "azure_conv_2023.csv"))),
        MapWorkload(
            "mooncake-conv", WorkloadSpec(kind="trace", dataset=str(traces / "mooncake_conversation.jsonl"))
        ),
    ]


@dataclass(frozen=True)
class Side:
    """The best setup of one family (P/D or aggregated) at one cell."""

    setup: str
    gpus: int
    sustained_rps: float
    per_gpu: float  # req/s per GPU at the SLO
    per_kw: float | None  # req/s per kW of the setup's mean power at that rate
    j_per_request: float | None
    note: str = ""
    local_share: float | None = None  # requests its route served on a decode instance alone (P/D only)
    prefix_hit_rate: float | None = None  # prompt tokens from the prefix caches (None: no prompt blocks)

    @classmethod
    def of(cls, r: SetupResult) -> Side:
        o = r.at_sustained
        return cls(r.setup.name, r.setup.gpus, r.sustained_rps, r.goodput_per_gpu, per_kw(r), r.j_per_request,
                   r.note, o.local_share if o else None, o.prefix_hit_rate if o else None)  # fmt: skip


def per_kw(r: SetupResult) -> float | None:
    """Sustained req/s per kW: the rate over the setup's mean power (static + dynamic) in that run."""
    o = r.at_sustained
    if o is None or r.sustained_rps <= 0:
        return 0.0 if o is None else None
    e = o.energy
    if e.static_j is None or e.dynamic_j is None or e.duration_s <= 0:
        return None
    watts = (e.static_j + e.dynamic_j) / e.duration_s
    return r.sustained_rps / (watts / 1e3)


def _margin(pd: float | None, agg: float | None) -> float | None:
    """P/D over aggregated - 1; +inf where only P/D sustains the SLO, None where neither does."""
    if pd is None or agg is None:
        return None
    if agg <= 0:
        return None if pd <= 0 else float("inf")
    return pd / agg - 1


@dataclass(frozen=True)
class Cell:
    model: str
    workload: str
    gpus: int
    slo: dict[str, float]
    pd: Side  # best by goodput per GPU
    agg: Side
    pd_kw: Side  # best by req/s per kW (may be another setup)
    agg_kw: Side
    pd_split: Side | None = None  # the best P/D setup under the split route (None: routes not searched)
    scale: Scale | None = None  # the SLO scale whose bounds `slo` holds (None: an absolute SLO)

    @property
    def label(self) -> str:
        """The cell's column: its SLO, or its SLO scale (whose bounds differ per model and workload)."""
        return slo_label(self.slo) if self.scale is None else scale_label(self.scale)

    @property
    def coords(self) -> dict[str, float]:
        """Where the cell sits on the map's SLO axes: the bounds, or the scale (or its two scales)."""
        return dict(self.slo) if self.scale is None else scale_coords(self.scale)

    @property
    def margin_gpu(self) -> float | None:
        return _margin(self.pd.per_gpu, self.agg.per_gpu)

    @property
    def route_gain(self) -> float | None:
        """What the best route adds over split, per GPU: best P/D / best split P/D - 1 (0: split won)."""
        return None if self.pd_split is None else _margin(self.pd.per_gpu, self.pd_split.per_gpu)

    @property
    def margin_kw(self) -> float | None:
        return _margin(self.pd_kw.per_kw, self.agg_kw.per_kw)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.scale is None:  # an absolute map's cells as before the scale existed
            out.pop("scale")
        return {
            **out,
            "slo_label": slo_label(self.slo),
            "margin_gpu": self.margin_gpu,
            "margin_kw": self.margin_kw,
            "route_gain": self.route_gain,
        }


@dataclass(frozen=True)
class ModelInput:
    name: str
    profile: Profile
    path: str


@dataclass
class BreakEven:
    models: list[ModelInput]
    workloads: list[MapWorkload]
    slos: list[dict[str, float]]
    gpus: list[int]
    config: SearchConfig
    max_model_len: int
    routes: list[str] = field(default_factory=lambda: list(DEFAULT_ROUTES))
    cells: list[Cell] = field(default_factory=list)
    routes_searched: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # model -> workload -> ...
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> workload -> requests
    wall_s: float = 0.0
    routes_wall_s: float = 0.0  # the searches of the routes other than split (summed over the processes)
    jobs: int = 1  # processes the (model, workload) pairs ran on
    busy_s: float = 0.0  # the pairs' time, summed over the processes (wall_s when jobs = 1)
    slo_scales: list[Scale] = field(default_factory=list)  # set: SLOs per model and workload (slos empty)
    unloaded: dict[str, dict[str, Unloaded]] = field(default_factory=dict)  # model -> workload -> ...

    def columns(self) -> list[str]:
        """The map's SLO columns: the absolute SLOs, or the SLO scales."""
        return (
            [scale_label(s) for s in self.slo_scales]
            if self.slo_scales
            else [slo_label(s) for s in self.slos]
        )

    def cells_of(self, model: str) -> list[Cell]:
        return [c for c in self.cells if c.model == model]

    def to_dict(self) -> dict[str, Any]:
        cfg = dataclasses.asdict(self.config)
        cfg.pop("slo")
        return {
            "kind": "planner-break-even",
            "models": [
                {
                    "name": m.name,
                    "profile": m.path,
                    "provenance": dataclasses.asdict(m.profile.provenance),
                    "description": m.profile.describe(),
                }
                for m in self.models
            ],
            "workloads": {w.name: dataclasses.asdict(w.spec) for w in self.workloads},
            "slos": self.slos,
            "gpus": self.gpus,
            "search": cfg,
            "max_model_len": self.max_model_len,
            "routes": self.routes,
            "routes_searched": self.routes_searched,
            "prefix_hit_rates": {m.name: prefix_hit_rates(self.cells_of(m.name)) for m in self.models},
            "skipped_requests": self.skipped,
            "cells": [c.to_dict() for c in self.cells],
            "wall_s": self.wall_s,
            "routes_wall_s": self.routes_wall_s,
            "jobs": self.jobs,
            "busy_s": self.busy_s,
            **({"slo_scales": self.slo_scales, "unloaded": self.resolved()} if self.slo_scales else {}),
        }

    def resolved(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per model and workload: the unloaded latency and the SLO bounds each scale resolved to (ms)."""
        return {
            m: {
                w: {**dataclasses.asdict(u), "slos": {scale_key(s): u.bounds(s) for s in self.slo_scales}}
                for w, u in per.items()
            }
            for m, per in self.unloaded.items()
        }


def within_context(workload: Workload, max_len: int) -> tuple[Workload, int]:
    """The workload without requests whose prompt + output exceed `max_len`, and how many were dropped."""
    keep = (workload.prompt_tokens + workload.output_tokens) <= max_len
    dropped = int(len(keep) - keep.sum())
    if dropped == 0:
        return workload, 0
    if not keep.any():
        raise ValueError(f"every request of {workload.spec.describe()} is longer than {max_len} tokens")
    specs = [s for s, k in zip(workload.specs, keep, strict=True) if k]
    kept = from_specs(dataclasses.replace(workload.spec, num_requests=len(specs)), specs)
    prefix = workload.prefix
    if prefix is not None:  # the kept requests' prompt blocks: a skipped request never reaches a cache
        prefix = Prefix(tuple(c for c, k in zip(prefix.chains, keep, strict=True) if k), prefix.block_tokens)
    return dataclasses.replace(kept, trace=workload.trace, prefix=prefix), dropped


def parse_routes(text: str) -> list[str]:
    """'split,load,threshold:1024,threshold:p50' -> the routes, checked; split must be one (the baseline a
    route's gain is measured against). threshold:pNN is the NN-th percentile of the workload's prompts."""
    routes = [r.strip().lower() for r in text.split(",") if r.strip()]
    for r in routes:
        kind, _, rest = r.partition(":")
        if kind == "threshold" and rest.startswith("p"):
            if not (rest[1:].isdigit() and 0 < int(rest[1:]) < 100):
                raise ValueError(f"route {r!r}: write threshold:pNN with 0 < NN < 100, e.g. threshold:p50")
        else:
            parse_route_policy(r)  # ValueError says what to write
    if SPLIT not in routes:
        raise ValueError(
            f"routes {text!r} lack split, the baseline of every route's gain; add it: split,{text}"
        )
    return list(dict.fromkeys(routes))


def resolve_routes(routes: Sequence[str], prompt_tokens: np.ndarray) -> list[str]:
    """The routes to search on a workload with these prompt lengths, by their canonical names: split
    first; threshold:pNN becomes threshold:N, N one token above that percentile of the prompt lengths
    (so the prompts up to it, about NN% of them, stay local); a threshold that splits every request
    (split), none (local) or the same requests as an earlier one is dropped."""
    out, shares = [SPLIT], {0.0}
    for r in routes:
        kind, _, rest = r.partition(":")
        if kind == "threshold":
            pct = rest.startswith("p")
            # the NN% shortest prompts (up to that percentile's length, included) stay local
            n = int(np.percentile(prompt_tokens, int(rest[1:]), method="lower")) + 1 if pct else int(rest)
            share = float(np.mean(prompt_tokens < n))  # the share served locally
            if share in shares or share >= 1.0:
                continue
            shares.add(share)
            r = f"threshold:{n}"
        name = parse_route_policy(r).name
        if name not in out:
            out.append(name)
    return out


def prefix_hit_rates(cells: Sequence[Cell]) -> dict[str, dict[str, dict[str, float]]]:
    """Per workload whose runs had prompt blocks: the predicted prefix hit rate of each family's best
    setup at its sustained rate, lowest and highest over the cells ('pd', 'agg')."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for c in cells:
        for family, side in (("pd", c.pd), ("agg", c.agg)):
            if side.prefix_hit_rate is None:
                continue
            r = out.setdefault(c.workload, {}).setdefault(family, {"min": 1.0, "max": 0.0})
            r["min"], r["max"] = min(r["min"], side.prefix_hit_rate), max(r["max"], side.prefix_hit_rate)
    return out


def _aggregated(gpus: int) -> list[Setup]:
    return [Setup(0, gpus)]


def _disaggregated(gpus: int, routes: Sequence[str] = (SPLIT,)) -> list[Setup]:
    return [Setup(x, gpus - x, route=r) for r in routes for x in range(1, gpus)]


def _best(results: Sequence[SetupResult], key: Callable[[Side], float | None]) -> Side:
    sides = [Side.of(r) for r in results]
    return max(sides, key=lambda s: (key(s) or 0.0, s.per_gpu))


@dataclass(frozen=True)
class _Mapped:
    cells: list[Cell]
    dropped: int  # requests longer than the context (the most of any one run)
    routes: list[str]  # the routes searched on this workload
    routes_s: float  # seconds spent on the routes other than split
    unloaded: Unloaded | None  # one request alone at the workload's median lengths (SLO scales only)
    wall_s: float = 0.0  # seconds spent on this model and workload


def _map_one(
    m: ModelInput,
    w: MapWorkload,
    slos: Sequence[dict[str, float]],
    gpus: Sequence[int],
    cfg: SearchConfig,
    max_len: int,
    top: int,
    routes: Sequence[str],
    progress: Callable[[str], None] | None,
    scales: Sequence[Scale] = (),
) -> _Mapped:
    """One model and workload: its cells, the requests longer than `max_len`, the routes searched. With
    `scales`, the SLOs are those scales of one request's latency alone at the workload's median lengths
    (planner/slo_scale.py), taken from the largest run (every run draws from the same lengths)."""
    started = time.perf_counter()
    prof = m.profile
    spec = dataclasses.replace(w.spec, seed=cfg.seed)
    dropped: dict[int, int] = {}

    def workload_of(n: int) -> Workload:
        wl, dropped[n] = within_context(workload_for(spec, n, cfg), max_len)
        return wl

    def search(counts: Sequence[int], setups: Callable[[int], list[Setup]], k: int, known: Any = None) -> Any:
        return search_grid(prof, counts, spec, cfg, list(slos), k, "round_robin", prof.engine, progress,
                           setups, workload_of, known)  # fmt: skip

    # thresholds at percentiles of the largest run's prompts (every run draws from the same lengths)
    largest = workload_of(max(gpus))
    searched = resolve_routes(routes, largest.prompt_tokens)
    alone = unloaded(prof, *median_lengths(largest.prompt_tokens, largest.output_tokens)) if scales else None
    if alone is not None:
        slos = [alone.bounds(s) for s in scales]
    others = searched[1:]
    if progress:
        progress(f"{m.name} / {w.name}: one instance, replicas and xPyD ({', '.join(searched)}) at "
                 f"{len(slos)} SLOs")  # fmt: skip
    single, replicas = search([1], _aggregated, 1), search(gpus, _aggregated, 1)
    split = search(gpus, _disaggregated, top)
    t0 = time.perf_counter()
    pd = search(gpus, lambda n: _disaggregated(n, others), top, split) if others else split
    routes_s = time.perf_counter() - t0
    cells = []
    for i, slo in enumerate(slos):
        for n in gpus:
            agg_family, pd_family = single[i][1] + replicas[i][n], pd[i][n]
            cells.append(
                Cell(
                    m.name,
                    w.name,
                    n,
                    dict(slo),
                    _best(pd_family, lambda s: s.per_gpu),
                    _best(agg_family, lambda s: s.per_gpu),
                    _best(pd_family, lambda s: s.per_kw),
                    _best(agg_family, lambda s: s.per_kw),
                    _best(split[i][n], lambda s: s.per_gpu),
                    scales[i] if scales else None,
                )
            )
    return _Mapped(
        cells, max(dropped.values(), default=0), searched, routes_s, alone, time.perf_counter() - started
    )


def break_even(
    models: Sequence[ModelInput],
    workloads: Sequence[MapWorkload],
    slos: Sequence[dict[str, float]],
    gpus: Sequence[int],
    cfg: SearchConfig,
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    top: int = 3,
    progress: Callable[[str], None] | None = None,
    routes: Sequence[str] = DEFAULT_ROUTES,
    scales: Sequence[Scale] = (),
    jobs: int = 1,
) -> BreakEven:
    """Every cell of the map (see the module docstring); `top`: P/D setups kept per GPU count, of which
    the best per kW is taken; `routes`: the per-request policies of the P/D side (`parse_routes`);
    `scales`: SLO scales (planner/slo_scale.py) in place of the absolute `slos` (which must then be empty);
    `jobs`: processes that map the (model, workload) pairs (`progress` must then pickle, as print does)."""
    if bool(scales) == bool(slos):
        raise ValueError("give either absolute SLOs or SLO scales, not both (or neither)")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1 (processes), got {jobs}")
    t0 = time.perf_counter()
    routes = parse_routes(",".join(routes))
    out = BreakEven(list(models), list(workloads), [dict(s) for s in slos], list(gpus), cfg, max_model_len,
                    routes, slo_scales=list(scales))  # fmt: skip
    pairs = [(m, w) for m in models for w in workloads]
    tasks = [
        (m, w, slos, gpus, cfg, min(max_model_len, m.profile.engine.kv_capacity_tokens), top, routes,
         progress, scales)
        for m, w in pairs
    ]  # fmt: skip
    out.jobs = max(1, min(jobs, len(tasks)))  # 1 also for no task
    if out.jobs == 1:
        mapped = [_map_one(*t) for t in tasks]
    else:  # the pairs are independent and seeded: the same cells in the same order, on several cores
        with ProcessPoolExecutor(out.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            mapped = list(pool.map(_map_one, *zip(*tasks, strict=True)))
    for (m, w), one in zip(pairs, mapped, strict=True):
        if one.unloaded is not None:
            out.unloaded.setdefault(m.name, {})[w.name] = one.unloaded
        out.cells += one.cells
        out.skipped.setdefault(m.name, {})[w.name] = one.dropped
        out.routes_searched.setdefault(m.name, {})[w.name] = one.routes
        out.routes_wall_s += one.routes_s
        out.busy_s += one.wall_s
    out.wall_s = time.perf_counter() - t0
    return out


def _at(key: str, value: float) -> str:
    """A fixed coordinate of a flip: 'ttft<=500' (ms), or 'ttft 5x' (a scale of a cross product)."""
    return f"{key.removesuffix('_scale')} {value:g}x" if key.endswith("_scale") else f"{key}<={value:g}"


def flips(cells: Sequence[Cell], margin: Callable[[Cell], float | None]) -> list[str]:
    """Where the sign of the margin changes between neighbouring SLO cells (tighter -> looser TPOT, then
    TTFT; or the SLO scale; or the TPOT scale, then the TTFT scale), per workload and GPU count:
    'azure-conv 4 GPUs, ttft<=500: tpot 10 -> 15 ms (...)', 'azure-conv 4 GPUs: scale 2 -> 3x (...)',
    'azure-conv 4 GPUs, ttft 5x: tpot scale 2 -> 3x (...)'."""
    out = []
    by: dict[tuple[str, int], list[Cell]] = {}
    for c in cells:
        by.setdefault((c.workload, c.gpus), []).append(c)
    for (wl, n), group in by.items():
        for key in [k for k in ("tpot", "ttft", "scale", "tpot_scale", "ttft_scale") if k in group[0].coords]:
            others = [k for k in group[0].coords if k != key]
            lines: dict[tuple[float, ...], list[Cell]] = {}
            for c in group:
                lines.setdefault(tuple(c.coords[k] for k in others), []).append(c)
            for line in lines.values():
                line.sort(key=lambda c: c.coords.get(key, 0.0))
                for a, b in itertools.pairwise(line):
                    ma, mb = margin(a), margin(b)
                    if ma is None or mb is None or np.sign(ma) == np.sign(mb):
                        continue
                    fixed = "".join(
                        f"{', ' if i == 0 else ' '}{_at(k, a.coords[k])}" for i, k in enumerate(others)
                    )
                    unit = "x" if key.endswith("scale") else " ms"
                    axis = key.replace("_", " ")
                    out.append(
                        f"{wl} {n} GPUs{fixed}: {axis} {a.coords[key]:g} -> {b.coords[key]:g}{unit} "
                        f"({'P/D' if mb > 0 else 'aggregated'} wins from there)"
                    )
    return out

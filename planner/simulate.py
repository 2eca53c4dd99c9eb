"""Discrete-event simulation of a serving setup: arrivals -> proxy selection -> prefill -> KV -> decode.

The loop is our own heapq loop rather than SimPy: SimPy runs every process as a generator and every
wait as an event object with callbacks, a per-event cost that the 100,000-request target (< 10 s on
one core) cannot afford, and our events are few and simple (an arrival, the end of an engine's run of
steps, a KV transfer done). Arrivals are pre-drawn and sorted, so they are merged from their array
instead of the heap. A heap entry carries the engine's version: cutting a run short (see
planner/engine.py) bumps it, and the stale entry is skipped when it surfaces.

Flow per request, as the proxy does it (proxy/handler.py): aggregated setups pick an instance at
arrival; xPyD picks a prefill and a decode instance at arrival, releases the prefill instance when
its prompt is done, moves the KV (profile's transfer time, no link contention), then queues the
request on the decode instance. Under a per-request policy (`setup.route`, testbed/route_rule.py, the
proxy's rule) a request may instead take the local path: only a decode instance is picked, and the
request prefills there as on a mixed instance; `load` reads the prefill tokens in flight per prefill
instance (from pick until its prompt is done) and the picked decode instance's outstanding requests.
Each instance a request enters first holds it in its API server for
the profile's frontend time (tokenizing, input processing: beside the GPU, so it delays the request
without occupying the engine), stretched while that instance streams (Engine.stream_share). No
network or proxy time is added beyond what the profile measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from heapq import heappop, heappush

import numpy as np

from planner.engine import DECODE, IDLE, MIXED, PREFILL, Engine, Requests
from planner.profile_model import EngineLimits, Profile
from planner.selection import Selector
from planner.setups import Setup
from testbed.route_rule import SPLIT, parse_route_policy

_STEP, _KV, _ENTER = 0, 1, 2


class SimulationError(ValueError):
    """The setup cannot serve this workload at all (a request larger than an instance's KV pool...)."""


@dataclass(frozen=True)
class Prefix:
    """A workload's prompt blocks for the instances' prefix caches: per request, its whole blocks as
    prefix-tree nodes (experiments.traces.prefix_chains), `block_tokens` tokens each."""

    chains: tuple[tuple[int, ...], ...]
    block_tokens: int


@dataclass(frozen=True)
class InstanceStats:
    role: str
    index: int
    admitted: int
    busy_s: float
    dynamic_j: float
    steps: int
    max_batch: int
    output_tokens: int
    prefix_hit_rate: float | None = None  # prompt tokens its prefix cache served (None: no cache)
    prefix_query_tokens: int = 0  # prompt tokens looked up in its prefix cache (the rate's denominator)


@dataclass
class SimRun:
    """Everything one simulated run produced; times in seconds from the start."""

    setup: Setup
    rate: float | None
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    first_token_s: np.ndarray
    end_s: np.ndarray
    prefill_end_s: np.ndarray  # the prompt's last step ended (aggregated: = first token)
    kv_ready_s: np.ndarray  # KV at the decode instance (NaN when aggregated or local)
    scheduled_s: np.ndarray  # first admitted into a step (xPyD: on the prefill instance)
    queued_s: np.ndarray  # reached the engine it last waited on (aggregated: after its API server)
    local: np.ndarray | None = None  # per request: served by its decode instance alone (a policy's path)
    instances: list[InstanceStats] = field(default_factory=list)
    events: int = 0
    wall_s: float = 0.0

    @property
    def duration_s(self) -> float:
        """First arrival to last end, the measured runs' window (first send to last end)."""
        return float(np.max(self.end_s) - np.min(self.arrival_s)) if len(self.end_s) else 0.0


def _check_fits(profile: Profile, limits: EngineLimits, prompt: np.ndarray, out: np.ndarray) -> None:
    need = int(np.max(prompt + out)) if len(prompt) else 0
    if need > limits.kv_capacity_tokens:
        raise SimulationError(
            f"a request needs {need} KV tokens but an instance holds {limits.kv_capacity_tokens} "
            f"(profile {profile.provenance.model}); shorten the workload or give a larger --kv-capacity"
        )


def simulate(
    profile: Profile,
    setup: Setup,
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
    arrival_s: np.ndarray,
    limits: EngineLimits | None = None,
    rate: float | None = None,
    fast_forward: bool = True,
    prefix: Prefix | None = None,
) -> SimRun:
    """Simulate every request to completion; `arrival_s` must be sorted.

    `limits` overrides the profile's engine limits; `fast_forward=False` takes one event per decode
    step (slow; tests use it to check the fast-forward arithmetic); `prefix` (a trace's prompt blocks)
    turns on each instance's prefix cache (planner.prefix_cache)."""
    wall0 = time.perf_counter()
    limits = limits or profile.engine
    n = len(arrival_s)
    if not (len(prompt_tokens) == len(output_tokens) == n):
        raise ValueError("prompt, output and arrival arrays must have one entry per request")
    if n and np.any(np.diff(arrival_s) < 0):
        raise ValueError("arrival times must be sorted")
    _check_fits(profile, limits, np.asarray(prompt_tokens), np.asarray(output_tokens))
    chains, chain_block = (prefix.chains, prefix.block_tokens) if prefix is not None else (None, 0)
    reqs = Requests([int(x) for x in prompt_tokens], [int(x) for x in output_tokens], chains, chain_block)
    kv_ready = [math.nan] * n
    kv = profile.kv_transfer
    # the prefill side's own latency (proxy hop, connector), then the transfer itself
    kv_base = kv.prefill_overhead_s + kv.latency_s
    kv_per_token = kv.bytes_per_token / kv.bandwidth_bytes_per_s
    fe = profile.frontend
    fe_base, fe_per_token = fe.latency_s, fe.per_token_s
    delayed = not fe.zero  # zero API-server time: requests reach the engine as they arrive

    if setup.disaggregated:
        prefill = [Engine(i, PREFILL, profile, limits, reqs, fast_forward) for i in range(setup.n_prefill)]
        decode = [Engine(i, DECODE, profile, limits, reqs, fast_forward) for i in range(setup.n_decode)]
    else:
        prefill = []
        decode = [Engine(i, MIXED, profile, limits, reqs, fast_forward) for i in range(setup.n_decode)]
    engines = prefill + decode  # heap entries name an engine by its position here
    first_decode = len(prefill)
    p_sel = Selector(setup.n_prefill, setup.policy) if prefill else None
    d_sel = Selector(setup.n_decode, setup.policy)
    decode_of = [0] * n
    prefill_of = [0] * n
    fe_free = [0.0] * len(engines)  # when each instance's API server is done with what it was given
    route = parse_route_policy(setup.route)
    local = [p_sel is None] * n  # no prefill side: every request is served where it lands
    p_tokens = [0] * setup.n_prefill  # prompt tokens picked for each prefill instance, not yet done

    heap: list[tuple[float, int, int, int, int]] = []
    seq = 0
    events = 0
    arrivals = [float(t) for t in arrival_s]
    i = 0
    next_arrival = arrivals[0] if n else math.inf
    while True:
        if heap and heap[0][0] <= next_arrival:
            t, _, kind, x, version = heappop(heap)
            events += 1
            if kind != _STEP:  # a request reaches an engine: after its KV moved, or its API server
                to_prefill = kind == _ENTER and not local[x]
                eng = prefill[prefill_of[x]] if to_prefill else decode[decode_of[x]]
                end = eng.enqueue(x, t, kv_ready=kind == _KV)
                if end != IDLE:
                    seq += 1
                    pos = eng.index if eng.role == PREFILL else first_decode + eng.index
                    heappush(heap, (end, seq, _STEP, pos, eng.version))
                continue
            eng = engines[x]
            if version != eng.version:
                continue
            eng.finish_run(t)
            if eng.completed:
                for rid in eng.completed:
                    d_sel.release(decode_of[rid])
            if eng.handoff:
                assert p_sel is not None
                for rid in eng.handoff:
                    p_sel.release(eng.index)
                    p_tokens[eng.index] -= reqs.prompt[rid]
                    n_prompt = reqs.prompt[rid]  # KV moved, then the decode instance's API server
                    api = (fe_base + fe_per_token * n_prompt) / (1.0 - decode[decode_of[rid]].stream_share(t))
                    ready = t + kv_base + kv_per_token * n_prompt + api
                    kv_ready[rid] = ready
                    seq += 1
                    heappush(heap, (ready, seq, _KV, rid, 0))
            end = eng.start_run(t)
            if end != IDLE:
                seq += 1
                heappush(heap, (end, seq, _STEP, x, eng.version))
        elif i < n:
            rid = i
            i += 1
            next_arrival = arrivals[i] if i < n else math.inf
            events += 1
            decode_of[rid] = d_sel.acquire()
            if p_sel is not None:
                least = min(p_tokens) if route.kind == "load" else 0
                d_out = d_sel.outstanding[decode_of[rid]] - 1
                if route.decide(reqs.prompt[rid], least, d_out) == SPLIT:
                    x = prefill_of[rid] = p_sel.acquire()
                    p_tokens[x] += reqs.prompt[rid]
                else:
                    local[rid] = True
            if delayed:
                # The API server of the instance it enters: one event loop, so one request at a time
                # (FIFO) and slowed by that instance's streaming share of the loop.
                pos = first_decode + decode_of[rid] if local[rid] else prefill_of[rid]
                first = engines[pos]
                api = (fe_base + fe_per_token * reqs.prompt[rid]) / (1.0 - first.stream_share(arrivals[rid]))
                entered = max(arrivals[rid], fe_free[pos]) + api
                fe_free[pos] = entered
                seq += 1
                heappush(heap, (entered, seq, _ENTER, rid, 0))
                continue
            if not local[rid]:
                eng = prefill[prefill_of[rid]]
                x = eng.index
            else:
                eng = decode[decode_of[rid]]
                x = first_decode + eng.index
            end = eng.enqueue(rid, arrivals[rid])
            if end != IDLE:
                seq += 1
                heappush(heap, (end, seq, _STEP, x, eng.version))
        else:
            break

    stats = [
        InstanceStats(
            e.role,
            e.index,
            e.admitted,
            e.busy_s,
            e.dynamic_j,
            e.n_steps,
            e.max_batch,
            e.tokens,
            e.cache.hit_tokens / e.cache.query_tokens if e.cache and e.cache.query_tokens else None,
            e.cache.query_tokens if e.cache else 0,
        )
        for e in engines
    ]
    return SimRun(
        setup=setup,
        rate=rate,
        arrival_s=np.asarray(arrival_s, dtype=float),
        prompt_tokens=np.asarray(prompt_tokens),
        output_tokens=np.asarray(output_tokens),
        first_token_s=np.array(reqs.first),
        end_s=np.array(reqs.end),
        prefill_end_s=np.array(reqs.prefill_end),
        kv_ready_s=np.array(kv_ready),
        scheduled_s=np.array(reqs.scheduled),
        queued_s=np.array(reqs.queued),
        local=np.array(local, dtype=bool),
        instances=stats,
        events=events,
        wall_s=time.perf_counter() - wall0,
    )

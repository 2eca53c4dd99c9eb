"""One simulated vLLM instance: the V1 scheduler's step composition, step times and energy.

Each step (vLLM V1, chunked prefill): every running decode sequence takes one token of the step's
budget (max_num_batched_tokens); then the one partially prefilled prompt continues; then waiting
requests are admitted first come first served, each prefilling min(rest of its prompt, budget left),
while the running count stays below max_num_seqs and the KV pool has room. A request reserves KV
blocks for its final length (prompt + output) when admitted, so nothing is ever preempted: vLLM
allocates lazily and preempts when full, which this does not model (close to KV saturation the
simulation admits fewer sequences than vLLM would and never pays a recompute).

Roles: "mixed" (one instance or a replica: prefill and decode share steps; a step with prefill work
costs prefill(tokens, pairs) + b*batch + c*context_sum, i.e. decodes ride along at their marginal cost
and the decode intercept is absorbed by the prefill one), "prefill" (max_tokens=1: the request leaves
when its prompt is done, but see the hold below)
and "decode" (KV arrives from a prefill instance; the request joins the next step and produces one
token per step, the first one included). A decode instance also serves local requests (a per-request
policy's `local` path, testbed/route_rule.py): those wait in `waiting` and prefill as on a mixed instance,
while requests whose KV arrived wait in `ready` and join the batch directly.

CUDA graphs (profile `prefill.graph_tokens`, EngineLimits.cudagraph_max_tokens): a step of more tokens
than the largest graph (prefill chunks + decodes, or a decode-only batch) runs eagerly and costs the
prefill fit's eager_s more; a profile without the bound, or without the fitted term, pays nothing.

The prefill hold (profile `kv_transfer.prefill_hold`; measured on vLLM 0.23 + P2P NCCL, not on a plain
instance: results/h200x2/frontier/README.md): a prompt finished in step k is released at the end of
step k+1, so two overlapping prefills end together and a chain of them ends one step apart. With
nothing else to run, step k+1 is a release step of HOLD_RELEASE_S. The prefill side's own latency
(`prefill_overhead_s`) is added beside the GPU, with the KV transfer (planner/simulate.py).

The serving loop (profile `loop`, results/h200x2/frontier/planner-validation/ttft-model.md): with async
scheduling vLLM's engine core composes step k+1 when step k starts, so on a mixed instance that was
running work a request that reached it after step k started joins step k+2 (an idle engine takes it at
once; P/D roles keep their measured KV terms, which hold that loop). The API server then handles a
step's outputs one stream after another, the step's first tokens last: a first token reaches the
client per_output_s x (the step's outputs) after the step ends. Request intake shares that one loop:
its API-server time is stretched by 1 / (1 - share), the share the instance's streaming takes at the
request's arrival (processor sharing on one core; `stream_share`).

Fast-forward: between changes of the batch (an admission, a finish) decode steps are identical but for
the context growing by one token per sequence, so step j of a run lasts d0 + c*batch*j and k steps last
k*d0 + c*batch*k(k-1)/2. A run of decode-only steps is one event, ending at the first finish; an
arrival that could be admitted cuts the run at the next step boundary. Events then scale with requests,
not with tokens.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Sequence
from heapq import heappop, heappush

from planner.prefix_cache import PrefixCache
from planner.profile_model import EngineLimits, Profile

MIXED, PREFILL, DECODE = "mixed", "prefill", "decode"
ROLES = (MIXED, PREFILL, DECODE)
IDLE = -1.0  # start_run/enqueue: nothing to schedule
# The step that releases held prompts when nothing else runs: overlapping pairs on a 0.23 P2P NCCL
# prefill instance ended 0.3-0.5 ms apart (results/h200x2/frontier, prefill-heavy 1P1D at 4-16 req/s).
HOLD_RELEASE_S = 0.0004
# The API server's share that streaming may take in the intake stretch 1 / (1 - share): below 1, so an
# overloaded server slows intake 20x instead of stopping it (the simulator has no API-server queue).
STREAM_SHARE_MAX = 0.95


class Requests:
    """Per-request lengths and the times the engines stamp (seconds; NaN until it happens)."""

    __slots__ = (
        "chain_block",
        "chains",
        "end",
        "first",
        "out",
        "prefill_end",
        "prompt",
        "queued",
        "scheduled",
    )

    def __init__(
        self,
        prompt: list[int],
        out: list[int],
        chains: Sequence[Sequence[int]] | None = None,
        chain_block: int = 0,
    ) -> None:
        n = len(prompt)
        self.prompt, self.out = prompt, out
        # prompt blocks as prefix-tree nodes (planner.prefix_cache), `chain_block` tokens each; None: no reuse
        self.chains, self.chain_block = chains, chain_block
        self.first = [math.nan] * n
        self.end = [math.nan] * n
        self.prefill_end = [math.nan] * n
        self.scheduled = [math.nan] * n  # admitted into a step (vLLM's first "scheduled")
        self.queued = [math.nan] * n  # reached the engine it waits on now


class Engine:
    __slots__ = (
        "admitted",
        "ahead",
        "block",
        "budget",
        "busy",
        "busy_s",
        "cache",
        "completed",
        "ctx",
        "da",
        "db",
        "dc",
        "dd",
        "decode_batch_s",
        "decode_dw",
        "dynamic_j",
        "eager",
        "fast_forward",
        "free",
        "fresh",
        "graph",
        "handoff",
        "heap",
        "held",
        "hold",
        "index",
        "lag",
        "last_end",
        "last_step",
        "max_batch",
        "max_seqs",
        "n_steps",
        "pa",
        "partial_done",
        "partial_rid",
        "pb",
        "pc",
        "prefill_dw",
        "r_b",
        "r_d0",
        "r_dw",
        "r_k",
        "r_prefilled",
        "r_slope",
        "r_start",
        "ready",
        "reqs",
        "role",
        "steps",
        "tokens",
        "version",
        "waiting",
    )

    def __init__(
        self,
        index: int,
        role: str,
        profile: Profile,
        limits: EngineLimits,
        reqs: Requests,
        fast_forward: bool = True,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown engine role {role!r}; use {', '.join(ROLES)}")
        self.index, self.role, self.reqs = index, role, reqs
        self.fast_forward = fast_forward  # False: one event per step (tests check both agree)
        self.pa, self.pb, self.pc = profile.prefill.terms
        self.da, self.db, self.dc, self.dd = profile.decode.terms
        # A step of more tokens (prefill chunks + decodes) than the largest CUDA graph runs eagerly and
        # costs eager_s more (planner/prefill_model.py); graph: a bound no step reaches where not modelled.
        self.eager = profile.prefill.eager_s
        bound = profile.prefill.eager_above
        self.graph = bound if bound is not None else sys.maxsize
        # A decode-only step's batch-size part (with an MoE model's experts-touched term), per batch size;
        # a batch of more sequences than the largest graph runs eagerly too.
        self.decode_batch_s = [
            profile.decode.batch_s(b) + (self.eager if b > self.graph else 0.0)
            for b in range(limits.max_num_seqs + 1)
        ]
        self.hold = role == PREFILL and profile.kv_transfer.prefill_hold  # see the module docstring
        # steps scheduled one ahead (module docstring); a P/D pair's loop is in its measured KV terms
        self.ahead = role == MIXED and profile.loop.async_scheduling
        self.lag = profile.loop.per_output_s  # API-server s per output of a step
        self.last_end, self.last_step = -1.0, 0.0  # the last run's end and its last step's start
        self.budget = limits.max_num_batched_tokens
        self.max_seqs = limits.max_num_seqs
        self.block = limits.block_size
        self.free = limits.kv_capacity_blocks
        power = profile.power
        if power.available:  # power above idle, per state (energy is None otherwise, see outcome)
            assert power.idle_w is not None and power.prefill_w is not None
            self.prefill_dw = power.prefill_w - power.idle_w
            self.decode_dw = [power.decode_w(b) - power.idle_w for b in range(self.max_seqs + 1)]
        else:
            self.prefill_dw, self.decode_dw = 0.0, [0.0] * (self.max_seqs + 1)
        self.cache = (
            PrefixCache(limits.kv_capacity_tokens, reqs.chain_block) if reqs.chains is not None else None
        )
        self.waiting: deque[int] = deque()  # to prefill here (every role)
        self.ready: deque[int] = deque()  # decode role: KV arrived, joins the batch directly
        self.partial_rid, self.partial_done = -1, 0
        self.heap: list[tuple[int, int]] = []  # (step after which it finishes, request)
        self.ctx = 0  # tokens the decode batch attends over in its next step
        self.fresh: list[int] = []  # decode role: joined this run, first token at the end of its step 1
        self.steps = 0
        self.version = 0
        self.busy = False
        self.r_start, self.r_d0, self.r_slope, self.r_dw = 0.0, 0.0, 0.0, 0.0
        self.r_k, self.r_b = 0, 0
        self.r_prefilled: list[int] = []
        self.completed: list[int] = []  # finished at the last finish_run; the simulator drains it
        self.handoff: list[int] = []  # prefill role: prompts done at the last finish_run
        self.held: list[int] = []  # prefill role: prompts whose KV is done, released at the next step's end
        self.busy_s, self.dynamic_j = 0.0, 0.0
        self.n_steps, self.admitted, self.max_batch = 0, 0, 0
        self.tokens = 0  # output tokens produced (the prefill role's single token is not output)

    def stream_share(self, now: float) -> float:
        """The share of its API server's loop this instance's streaming takes at `now`: per_output_s x
        the outputs per second of the step in progress; 0 when idle."""
        if not self.busy or not self.lag:
            return 0.0
        step = self.r_d0
        if self.r_k > 1:  # a run of decode steps: the one in progress (the same with fast_forward off)
            step += self.r_slope * min(self._steps_within(now - self.r_start), self.r_k - 1)
        return min(STREAM_SHARE_MAX, self.lag * (self.r_b + len(self.r_prefilled)) / step)

    def blocks_for(self, rid: int) -> int:
        """KV blocks reserved for a request: prompt + output (prefill role: prompt + its one token)."""
        tokens = self.reqs.prompt[rid] + (1 if self.role == PREFILL else self.reqs.out[rid])
        return -(-tokens // self.block)

    # ----------------------------------------------------------------------------------------- runs

    def run_time(self, k: int) -> float:
        return k * self.r_d0 + self.r_slope * k * (k - 1) / 2

    def _steps_within(self, elapsed: float) -> int:
        """Whole steps of the current run completed `elapsed` seconds after it started."""
        d0, s = self.r_d0, self.r_slope
        if s == 0.0:
            m = int(elapsed / d0)
        else:
            h = d0 - s / 2
            m = int((-h + math.sqrt(h * h + 2 * s * elapsed)) / s)
        while m > 0 and self.run_time(m) > elapsed:
            m -= 1
        while self.run_time(m + 1) <= elapsed:
            m += 1
        return m

    def start_run(self, now: float) -> float:
        """Compose the next step (or run of decode steps) at `now`; its end time, or IDLE."""
        reqs = self.reqs
        prompt, out = reqs.prompt, reqs.out
        heap, waiting = self.heap, self.waiting
        batch = len(heap)
        running = batch + (self.partial_rid >= 0)
        # async scheduling: this step was composed when the previous one started, if work went on
        busy_on = self.ahead and self.last_end == now and (running or self.held)
        cutoff = self.last_step if busy_on else now
        queued = reqs.queued
        ready = self.ready
        if ready:
            while ready and running < self.max_seqs:
                rid = ready[0]
                need = self.blocks_for(rid)
                if need > self.free or queued[rid] > cutoff:
                    break
                ready.popleft()
                self.free -= need
                reqs.scheduled[rid] = now
                heappush(heap, (self.steps + out[rid], rid))
                self.ctx += prompt[rid]
                self.fresh.append(rid)
                running += 1
                batch += 1
                self.admitted += 1
        budget = self.budget - batch
        tokens = 0
        pairs = 0
        prefilled = self.r_prefilled
        prefilled.clear()
        # prefill what waits here (a decode instance: its local requests; none under split)
        rid = self.partial_rid
        if rid >= 0:
            done = self.partial_done
            chunk = min(prompt[rid] - done, budget)
            tokens += chunk
            pairs += chunk * (done + chunk)
            budget -= chunk
            if done + chunk == prompt[rid]:
                prefilled.append(rid)
                self.partial_rid = -1
            else:
                self.partial_done = done + chunk
        while budget > 0 and waiting and running < self.max_seqs:
            rid = waiting[0]
            need = self.blocks_for(rid)
            if need > self.free or queued[rid] > cutoff:
                break
            waiting.popleft()
            self.free -= need
            reqs.scheduled[rid] = now
            running += 1
            self.admitted += 1
            n = prompt[rid]
            cached = 0 if self.cache is None else self.cache.admit(reqs.chains[rid], n)  # type: ignore[index]
            chunk = min(n - cached, budget)
            tokens += chunk
            pairs += chunk * (cached + chunk)
            budget -= chunk
            if cached + chunk == n:
                prefilled.append(rid)
            else:
                self.partial_rid, self.partial_done = rid, cached + chunk
        if tokens:
            decode = self.db * batch + self.dc * self.ctx + self.dd * batch * batch
            self.r_d0 = self.pa + self.pb * tokens + self.pc * pairs + decode
            if tokens + batch > self.graph:
                self.r_d0 += self.eager
            self.r_k, self.r_slope, self.r_dw = 1, 0.0, self.prefill_dw
        elif self.held:  # nothing else to run: one short step that only reports the finished sends
            self.r_d0, self.r_k, self.r_slope, self.r_dw = HOLD_RELEASE_S, 1, 0.0, 0.0
        elif batch:
            self.r_d0 = self.da + self.dc * self.ctx + self.decode_batch_s[batch]
            late = waiting and queued[waiting[0]] > cutoff  # joins the next step: a run of one
            self.r_k = heap[0][0] - self.steps if self.fast_forward and not late else 1
            self.r_slope, self.r_dw = self.dc * batch, self.decode_dw[batch]
        else:
            self.busy = False
            return IDLE
        if batch > self.max_batch:
            self.max_batch = batch
        self.busy, self.r_start, self.r_b = True, now, batch
        return now + self.run_time(self.r_k)

    def finish_run(self, now: float) -> None:
        """Apply the run that ends at `now`: tokens, first tokens, finished requests, energy."""
        reqs = self.reqs
        prompt, out = reqs.prompt, reqs.out
        k, batch = self.r_k, self.r_b
        duration = now - self.r_start
        self.last_end, self.last_step = now, now - (self.run_time(k) - self.run_time(k - 1))
        self.busy_s += duration
        self.dynamic_j += self.r_dw * duration
        self.n_steps += k
        self.steps += k
        self.ctx += batch * k
        self.tokens += batch * k
        self.completed.clear()
        self.handoff.clear()
        if self.fresh:
            first_at = self.r_start + self.r_d0 + self.lag * batch
            for rid in self.fresh:
                reqs.first[rid] = first_at
            self.fresh.clear()
        heap, steps = self.heap, self.steps
        while heap and heap[0][0] <= steps:
            rid = heappop(heap)[1]
            reqs.end[rid] = now
            self.ctx -= prompt[rid] + out[rid]
            self.free += self.blocks_for(rid)
            self.completed.append(rid)
        if self.held:  # released at the end of the step after their own
            for rid in self.held:
                self.free += self.blocks_for(rid)
            self.handoff.extend(self.held)
            self.held.clear()
        first_at = now + self.lag * (batch + len(self.r_prefilled))  # its chunk leaves last
        for rid in self.r_prefilled:
            reqs.prefill_end[rid] = now
            if self.role == PREFILL:
                if self.hold:
                    self.held.append(rid)
                else:
                    self.free += self.blocks_for(rid)
                    self.handoff.append(rid)
                continue
            reqs.first[rid] = first_at
            self.tokens += 1
            if out[rid] == 1:
                reqs.end[rid] = first_at
                self.free += self.blocks_for(rid)
                self.completed.append(rid)
            else:
                heappush(heap, (steps + out[rid] - 1, rid))
                self.ctx += prompt[rid] + 1
        self.busy = False

    def enqueue(self, rid: int, now: float, kv_ready: bool = False) -> float:
        """A request reaches this instance (`kv_ready`: its KV came from a prefill instance, decode role
        only; else it prefills here); returns a (new) run end to schedule, or IDLE."""
        queue = self.ready if kv_ready else self.waiting
        queue.append(rid)
        self.reqs.queued[rid] = now
        if not self.busy:
            return self.start_run(now)
        if self.r_k > 1 and len(queue) == 1 and self._admissible(rid, kv_ready):
            # the next step boundary; with async scheduling the one after (the next step is composed)
            new_k = self._steps_within(now - self.r_start) + 1 + self.ahead
            if new_k < self.r_k:
                self.r_k = new_k
                self.version += 1
                return self.r_start + self.run_time(new_k)
        return IDLE

    def _admissible(self, rid: int, kv_ready: bool) -> bool:
        running = len(self.heap) + (self.partial_rid >= 0)
        if running >= self.max_seqs or self.blocks_for(rid) > self.free:
            return False
        return kv_ready or self.budget > len(self.heap)

"""The one place the planner reads measured results (`RunResult.load`): keep the coupling here.

`load_measured(run_dir)` turns a run directory into what validation and the KV fit need: the setup it
ran (traditional = single, passthrough = N replicas, disagg = xPyD from the GPU roles), its offered
rate, per-request TTFT / TPOT / E2E, J per request (serving GPUs and all GPUs) with static and dynamic
parts, and the proxy's stage timings per request (P/D runs). For replaying the run in the simulator it
also carries what was sent: every measured request's drawn lengths and scheduled send offset, the
arrival process with its seed, when the energy window opened against the first send, and the engine
limits the instances ran with. `find_measured(root)` lists the run directories under a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.runs import find_results
from experiments.arrivals import ArrivalConfig
from experiments.schema import Record, RunResult, RunWarning, WorkloadConfig, form_of_roles
from planner.setups import POLICIES, Setup


class MeasuredResultError(ValueError):
    """A result directory lacks what the planner needs from it."""


@dataclass(frozen=True)
class RecordedEngine:
    """Scheduler limits the run's instances were launched with (None: not recorded, or they differ)."""

    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    kv_capacity_tokens: int | None = None  # the smallest KV pool among the driven instances


@dataclass(frozen=True)
class MeasuredRun:
    path: Path
    setup: Setup
    rate: float | None
    slo: dict[str, float] | None
    workload: WorkloadConfig
    arrival: ArrivalConfig
    engine: RecordedEngine
    measured_requests: int  # failed ones included: they miss every SLO
    sent_prompt_tokens: np.ndarray  # every measured request as drawn, by index (replays the run)
    sent_output_tokens: np.ndarray
    scheduled_s: np.ndarray  # scheduled send offsets, s after the first (NaN where not recorded)
    energy_lead_s: float | None  # energy window start -> first scheduled send
    prompt_tokens: np.ndarray  # successful measured requests, in record order
    output_tokens: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray  # NaN for one output token
    e2el_ms: np.ndarray
    completed_rps: float | None
    j_per_request: float | None  # serving GPUs
    j_per_request_all_gpus: float | None
    static_j_per_request: float | None
    dynamic_j_per_request: float | None
    prefill_leg_ms: np.ndarray  # NaN where the record has no stage timing
    decode_first_chunk_ms: np.ndarray
    decode_total_ms: np.ndarray
    output_cost_s: float | None = None  # the API server's time per output of a step (see output_cost_s)
    warnings: tuple[RunWarning, ...] = ()  # the result's own (typed: filter on code)


def _setup(res: RunResult, path: Path) -> Setup:
    """From the recorded serving setup when it tells the counts, else from the mode and GPU roles
    (schema 1.0): experiments.schema.vocabulary's forms."""
    meta = res.metadata
    ss = meta.serving_setup
    if ss is not None and ss.form is not None:
        policy = ss.select if ss.select in POLICIES else "round_robin"
        return Setup(ss.form.n_prefill, ss.form.n_decode, policy)
    roles = {str(k): v for k, v in meta.config.gpu_roles.items()}
    form = form_of_roles(meta.mode, roles.values())
    if form is None:
        raise MeasuredResultError(
            f"{path}: cannot tell the setup from mode {meta.mode!r} and GPU roles {roles}"
        )
    return Setup(form.n_prefill, form.n_decode)


def _stage(records: list[Record], key: str) -> np.ndarray:
    values = [getattr(r.stages, key, None) if r.stages is not None else None for r in records]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _one(values: list[int | None]) -> int | None:
    """The value every instance shares, else None."""
    known = {int(v) for v in values if v is not None}
    return known.pop() if len(known) == 1 and len(values) == sum(v is not None for v in values) else None


def _engine(res: RunResult) -> RecordedEngine:
    ss = res.metadata.serving_setup
    if ss is None or not ss.instances:
        return RecordedEngine()
    driven = [i for i in ss.instances if i.name not in ss.idle_instances] or ss.instances
    kv = [i.engine_log.get("kv_cache_tokens") for i in driven]
    return RecordedEngine(
        max_num_batched_tokens=_one([i.settings.max_num_batched_tokens for i in driven]),
        max_num_seqs=_one([i.settings.max_num_seqs for i in driven]),
        kv_capacity_tokens=min(int(v) for v in kv) if kv and all(v is not None for v in kv) else None,
    )


def _sent(res: RunResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lengths as drawn and scheduled offsets of every measured request, by index."""
    sent = sorted(res.measured(), key=lambda r: r.index)
    prompt = [r.input_tokens_expected or r.prompt_tokens or 0 for r in sent]
    output = [r.output_tokens_expected or r.completion_tokens or 0 for r in sent]
    sched = np.array([np.nan if r.scheduled_mono_ns is None else r.scheduled_mono_ns for r in sent], float)
    if np.any(np.isfinite(sched)):
        sched = (sched - np.nanmin(sched)) / 1e9
    return np.array(prompt, dtype=np.int64), np.array(output, dtype=np.int64), sched


def _energy_lead_s(res: RunResult) -> float | None:
    window = res.energy.window if res.energy is not None and res.energy.available else None
    scheduled = [r.scheduled_mono_ns for r in res.measured() if r.scheduled_mono_ns is not None]
    if window is None or not scheduled:
        return None
    return (min(scheduled) - window.start_monotonic_ns) / 1e9


STEP_GAP_NS = 500_000  # a step's chunks reach the client < 0.5 ms apart; its output groups ~1-2 ms apart
OUTPUT_GROUP = 128  # vLLM's API server takes a step's outputs 128 at a time (VLLM_V1_OUTPUT_PROC_CHUNK_SIZE)
GROUP_GAP_NS = 3_000_000  # the next group of one step follows within 3 ms (measured 0.8-1.9 ms); the
# next step's burst follows a full one later: a 128-stream decode step takes >= 8 ms on H200
MIN_GROUPS = 20  # fewer full groups say little: the run's batches stayed under 128 streams


def output_cost_s(records: list[Record]) -> float | None:
    """The API server's time per output of a step, from a run's chunk times (output_group_cost_s)."""
    return output_group_cost_s(
        [np.asarray(r.chunk_mono_ns, dtype=np.int64) for r in records if r.chunk_mono_ns]
    )


def output_group_cost_s(streams_ns: list[np.ndarray]) -> float | None:
    """The API server's time per output of a step, from every stream's chunk arrival times (ns).

    vLLM's API server handles a step's outputs in groups of OUTPUT_GROUP: it processes a group, then
    writes its chunks one stream after another, then takes the next group. Pooled over streams, chunks
    arrive in bursts, one per group; a full burst followed closely by the next one of the same step
    spans one group's processing and writing, so (next start - start) / OUTPUT_GROUP is the time per
    output. The median over such bursts; None with fewer than MIN_GROUPS (batches under 128 streams)."""
    if not streams_ns:
        return None
    t = np.sort(np.concatenate(streams_ns))
    cut = np.flatnonzero(np.diff(t) > STEP_GAP_NS) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(t)]
    full = (ends - starts)[:-1] == OUTPUT_GROUP
    close = t[starts[1:]] - t[ends[:-1] - 1] < GROUP_GAP_NS
    pick = full & close
    if pick.sum() < MIN_GROUPS:
        return None
    periods = (t[starts[1:]] - t[starts[:-1]])[pick] / 1e9
    return float(np.median(periods)) / OUTPUT_GROUP


def find_measured(root: str | Path) -> list[Path]:
    """Every run directory under `root` (result.json or its archive), sorted."""
    return [p.parent for p in find_results(root)]


def load_measured(run_dir: str | Path) -> MeasuredRun:
    return measured_from(RunResult.load(run_dir), run_dir)


def measured_from(res: RunResult, run_dir: str | Path) -> MeasuredRun:
    """A loaded result as the planner reads it (`run_dir`: where it was loaded from)."""
    path = Path(res.path) if res.path else Path(run_dir)
    setup = _setup(res, path)
    ok = res.successes()
    if not ok:
        raise MeasuredResultError(f"{path}: no successful measured request")
    arrays = res.arrays()
    serving = res.energy.totals("serving_gpus") if res.energy is not None and res.energy.available else None
    every = res.energy.totals("all_gpus") if res.energy is not None and res.energy.available else None
    n = len(ok)
    config = res.metadata.config
    sent_prompt, sent_output, scheduled = _sent(res)
    return MeasuredRun(
        path=path.parent,
        setup=setup,
        rate=config.arrival.rate,
        slo=config.slo,
        workload=config.workload,
        arrival=config.arrival,
        engine=_engine(res),
        measured_requests=len(res.measured()),
        sent_prompt_tokens=sent_prompt,
        sent_output_tokens=sent_output,
        scheduled_s=scheduled,
        energy_lead_s=_energy_lead_s(res),
        prompt_tokens=np.array([r.prompt_tokens or r.input_tokens_expected for r in ok], dtype=float),
        output_tokens=np.array([r.completion_tokens or 0 for r in ok], dtype=float),
        ttft_ms=arrays["ttft_ms"],
        tpot_ms=arrays["tpot_ms"],
        e2el_ms=arrays["e2el_ms"],
        completed_rps=res.summary.request_throughput if res.summary is not None else None,
        j_per_request=serving.per(n) if serving else None,
        j_per_request_all_gpus=every.per(n) if every else None,
        static_j_per_request=serving.per(n, "static_j") if serving else None,
        dynamic_j_per_request=serving.per(n, "dynamic_j") if serving else None,
        prefill_leg_ms=_stage(ok, "prefill_ms"),
        decode_first_chunk_ms=_stage(ok, "decode_first_chunk_ms"),
        decode_total_ms=_stage(ok, "decode_total_ms"),
        output_cost_s=output_cost_s(ok),
        warnings=tuple(res.warnings),
    )

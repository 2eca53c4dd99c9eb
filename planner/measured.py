"""The one place the planner reads measured results (`RunResult.load`): keep the coupling here.

`load_measured(run_dir)` turns a run directory into what validation and the KV fit need: the setup it
ran (traditional = single, passthrough = N replicas, disagg = xPyD from the GPU roles), its offered
rate, per-request TTFT / TPOT, J per request (serving GPUs and all GPUs) with static and dynamic parts,
and the proxy's stage timings per request (P/D runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.schema import Record, RunResult
from planner.setups import Setup


class MeasuredResultError(ValueError):
    """A result directory lacks what the planner needs from it."""


@dataclass(frozen=True)
class MeasuredRun:
    path: Path
    setup: Setup
    rate: float | None
    slo: dict[str, float] | None
    prompt_tokens: np.ndarray  # successful measured requests, in record order
    output_tokens: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray  # NaN for one output token
    completed_rps: float | None
    j_per_request: float | None  # serving GPUs
    j_per_request_all_gpus: float | None
    static_j_per_request: float | None
    dynamic_j_per_request: float | None
    prefill_leg_ms: np.ndarray  # NaN where the record has no stage timing
    decode_first_chunk_ms: np.ndarray
    decode_total_ms: np.ndarray


def _setup(res: RunResult, path: Path) -> Setup:
    """From the recorded serving setup when there is one, else from the mode and GPU roles (schema 1.0)."""
    meta = res.metadata
    ss = meta.serving_setup
    if ss is not None and ss.kind == "xpyd" and ss.num_prefill and ss.num_decode:
        return Setup(ss.num_prefill, ss.num_decode)
    if ss is not None and ss.kind in ("single", "replicas") and ss.num_instances:
        return Setup(0, ss.num_instances)
    roles = {str(k): v for k, v in meta.config.gpu_roles.items()}
    counts = {r: sum(1 for v in roles.values() if v == r) for r in ("prefill", "decode", "serving")}
    if meta.mode == "disagg" and counts["prefill"] and counts["decode"]:
        return Setup(counts["prefill"], counts["decode"])
    if meta.mode in ("traditional", "passthrough") and counts["serving"]:
        return Setup(0, counts["serving"])
    raise MeasuredResultError(f"{path}: cannot tell the setup from mode {meta.mode!r} and GPU roles {roles}")


def _stage(records: list[Record], key: str) -> np.ndarray:
    values = [getattr(r.stages, key, None) if r.stages is not None else None for r in records]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def load_measured(run_dir: str | Path) -> MeasuredRun:
    res = RunResult.load(run_dir)
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
    return MeasuredRun(
        path=path.parent,
        setup=setup,
        rate=config.arrival.rate,
        slo=config.slo,
        prompt_tokens=np.array([r.prompt_tokens or r.input_tokens_expected for r in ok], dtype=float),
        output_tokens=np.array([r.completion_tokens or 0 for r in ok], dtype=float),
        ttft_ms=arrays["ttft_ms"],
        tpot_ms=arrays["tpot_ms"],
        completed_rps=res.summary.request_throughput if res.summary is not None else None,
        j_per_request=serving.per(n) if serving else None,
        j_per_request_all_gpus=every.per(n) if every else None,
        static_j_per_request=serving.per(n, "static_j") if serving else None,
        dynamic_j_per_request=serving.per(n, "dynamic_j") if serving else None,
        prefill_leg_ms=_stage(ok, "prefill_ms"),
        decode_first_chunk_ms=_stage(ok, "decode_first_chunk_ms"),
        decode_total_ms=_stage(ok, "decode_total_ms"),
    )

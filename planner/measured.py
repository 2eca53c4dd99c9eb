"""The one place the planner reads measured results (experiments.results.load): keep the coupling here.

`load_measured(run_dir)` turns a run directory into what validation and the KV fit need: the setup it
ran (traditional = single, passthrough = N replicas, disagg = xPyD from the GPU roles), its offered
rate, per-request TTFT / TPOT, J per request (serving GPUs and all GPUs) with static and dynamic parts,
and the proxy's stage timings per request (P/D runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.results import load
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


def _setup(mode: str, roles: dict[str, str], path: Path) -> Setup:
    counts = {r: sum(1 for v in roles.values() if v == r) for r in ("prefill", "decode", "serving")}
    if mode == "disagg" and counts["prefill"] and counts["decode"]:
        return Setup(counts["prefill"], counts["decode"])
    if mode in ("traditional", "passthrough") and counts["serving"]:
        return Setup(0, counts["serving"])
    raise MeasuredResultError(f"{path}: cannot tell the setup from mode {mode!r} and GPU roles {roles}")


def _stage(records: list[dict], key: str) -> np.ndarray:
    values = [(r.get("stages") or {}).get(key) for r in records]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def load_measured(run_dir: str | Path) -> MeasuredRun:
    res = load(run_dir)
    meta = res.metadata
    config = meta.get("config") or {}
    setup = _setup(str(meta.get("mode")), dict(config.get("gpu_roles") or {}), res.path)
    ok = [r for r in res.measured() if r.get("ok")]
    if not ok:
        raise MeasuredResultError(f"{res.path}: no successful measured request")
    arrays = res.arrays()
    totals = (res.energy or {}).get("totals") or {}
    serving = totals.get("serving_gpus") or {}
    n = len(ok)

    def per_request(part: str) -> float | None:
        value = serving.get(part)
        return float(value) / n if value is not None else None

    summary = res.summary or {}
    return MeasuredRun(
        path=res.path.parent,
        setup=setup,
        rate=(config.get("arrival") or {}).get("rate"),
        slo=config.get("slo"),
        prompt_tokens=np.array(
            [r.get("prompt_tokens") or r.get("input_tokens_expected") for r in ok], dtype=float
        ),
        output_tokens=np.array([r.get("completion_tokens") or 0 for r in ok], dtype=float),
        ttft_ms=arrays["ttft_ms"],
        tpot_ms=arrays["tpot_ms"],
        completed_rps=summary.get("request_throughput"),
        j_per_request=serving.get("j_per_request"),
        j_per_request_all_gpus=(totals.get("all_gpus") or {}).get("j_per_request"),
        static_j_per_request=per_request("static_j"),
        dynamic_j_per_request=per_request("dynamic_j"),
        prefill_leg_ms=_stage(ok, "prefill_ms"),
        decode_first_chunk_ms=_stage(ok, "decode_first_chunk_ms"),
        decode_total_ms=_stage(ok, "decode_total_ms"),
    )

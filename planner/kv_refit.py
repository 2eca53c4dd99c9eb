"""`python -m planner kv --profile P (--pd-result RUN | --carry-from P8B) --output P2`: a profile's KV side.

From a P/D run: the KV transfer model and the prefill side (its own latency and whether it holds finished
prompts) come from a measured P/D pair's stage timings, read against the profile's own prefill, decode
and API-server models. This redoes that part offline: for another P/D run, another connector (NIXL
beside P2P NCCL), or after a change of how it is derived.

Carried from another profile (a model no pair has run yet): the other profile's fixed costs (transfer
latency, bandwidth, the prefill side's latency and hold), with this model's own KV bytes per token, so
the transfer time scales with its KV size. The source says so: these are the other model's
measurements, not this one's. Everything else, raw points included, is kept as measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from analysis.prefill_inflation import HELD_MS, MIN_PAIRS, OverlapEvidence, overlap_evidence
from analysis.runs import runs_from_results
from experiments.model_dir import MoeRouting
from experiments.schema import RunResult
from planner.kv_transfer import (
    carried_kv,
    fit_kv_transfer,
    kv_points_from_stages,
    prefill_overhead_s,
)
from planner.measured import MeasuredRun, measured_from
from planner.profile_model import (
    DecodePoint,
    FrontendModel,
    KvPoint,
    KvTransferModel,
    fit_decode,
    load_profile,
)


def add_kv_parser(sub: Any) -> None:
    p = sub.add_parser("kv", help="redo a profile's KV transfer and prefill side from a measured P/D run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--profile", type=Path, required=True, help="measured profile JSON")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pd-result", type=Path, help="a measured P/D run directory")
    src.add_argument(
        "--carry-from", type=Path, help="a profile whose measured KV side to carry (e.g. the 8B NIXL one)"
    )
    p.add_argument("--output", type=Path, required=True, help="profile JSON to write (may be --profile)")


def cmd_kv(args: argparse.Namespace) -> int:
    prof = load_profile(args.profile)
    if args.carry_from is not None:
        kv = carried_kv(load_profile(args.carry_from).kv_transfer, prof.kv_transfer.bytes_per_token,
                        str(args.carry_from))  # fmt: skip
        points: tuple[KvPoint, ...] = ()
        note = f"KV side carried from {args.carry_from} at this model's KV bytes per token"
    else:
        kv, found = kv_model_from_pd(
            args.pd_result,
            list(prof.decode_points),
            prof.kv_transfer.bytes_per_token,
            prof.frontend,
            prof.client_prefill_s,
            prof.decode.routing,
        )
        points = tuple(found)
        note = f"KV side redone from {args.pd_result} by `python -m planner kv`"
    provenance = replace(prof.provenance, notes="; ".join(n for n in (prof.provenance.notes, note) if n))
    new = replace(prof, kv_transfer=kv, kv_points=points, provenance=provenance)
    out = new.save(args.output)
    print(new.describe())
    print(f"profile: {out}")
    return 0


def kv_model_from_pd(
    pd_result: Path,
    decode: list[DecodePoint],
    bytes_per_token: float,
    frontend: FrontendModel,
    alone_s: Callable[[int], float],
    routing: MoeRouting | None = None,
) -> tuple[KvTransferModel, list[KvPoint]]:
    """The KV transfer model and the prefill side from a measured P/D run's stage timings (`routing`: an
    MoE model's, for its decode fit)."""
    result = RunResult.load(pd_result)
    run = measured_from(result, pd_result)
    if not run.setup.disaggregated:
        raise ValueError(f"--pd-result {pd_result} is a {run.setup.name} run, not a P/D pair")
    ok = ~np.isnan(run.decode_first_chunk_ms)
    mean_batch = (run.completed_rps or 0.0) * float(np.nanmean(run.decode_total_ms)) / 1e3
    points = kv_points_from_stages(
        run.prompt_tokens[ok].astype(int).tolist(),
        (run.decode_first_chunk_ms[ok] / 1e3).tolist(),
        fit_decode(decode, routing),
        mean_batch,
        frontend,
    )
    model = fit_kv_transfer(points, f"P/D stage timings of {pd_result}", bytes_per_token)
    evidence = overlap_evidence(runs_from_results([result])[0])
    return replace(model, **prefill_side(pd_result, run, evidence, alone_s)), points


def prefill_side(
    pd_result: Path, run: MeasuredRun, evidence: OverlapEvidence | None, alone_s: Callable[[int], float]
) -> dict[str, Any]:
    """The prefill instance's hold and its own latency, from the overlap of the P/D run's prefill legs."""
    legs = ~np.isnan(run.prefill_leg_ms)
    alone = [alone_s(int(n)) for n in run.prompt_tokens[legs]]
    if evidence is None or evidence.solo_median_ms is None:  # too few prefills apart: every leg counts
        overhead = prefill_overhead_s((run.prefill_leg_ms[legs] / 1e3).tolist(), alone)
        source = f"median prefill leg of {pd_result} - the prompt alone on this instance"
    else:
        overhead = max(evidence.solo_median_ms / 1e3 - float(np.median(alone)), 0.0)
        source = (
            f"median prefill leg that overlapped no other ({evidence.solo_median_ms:.1f} ms) in {pd_result} "
            "- the prompt alone on this instance"
        )
    gap = evidence.pair_end_gap_ms if evidence is not None and evidence.pairs >= MIN_PAIRS else None
    held = gap is not None and gap < HELD_MS
    hold_source = (
        f"isolated overlapping prefill pairs in {pd_result} ended a median {gap:.1f} ms apart "
        f"(held: under {HELD_MS:g} ms)"
        if gap is not None
        else f"fewer than {MIN_PAIRS} isolated overlapping prefill pairs in {pd_result}: no hold modelled"
    )
    return {
        "prefill_overhead_s": overhead,
        "prefill_overhead_source": source,
        "prefill_hold": held,
        "prefill_hold_source": hold_source,
    }

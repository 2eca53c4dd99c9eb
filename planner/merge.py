"""`python -m planner merge BASE EXTRA... --output OUT [--pd-result RUN]`: one profile from several
profile runs of the same instance.

One profile run measures what its server allows: a server started with `--max-model-len 4096` skips the
8k and 16k prefills, and a run can be cut short. A second run with other sizes completes it. Merging keeps
every raw point and refits every model:
- prefill and decode points: a later file's point replaces an earlier one at the same prompt length, or
  the same batch at a context within 5%;
- API-server points: as stored; a schema-2 profile kept only its fit, so its fit at its own prefill
  sizes stands in for them (said in the source);
- power points: all of them (idle and prefill W are time-weighted means).
The files must share model, GPU, vLLM version and engine limits (max_model_len is not one of them). The
KV side is the first file's, unless --pd-result derives it again against the merged models, as
`python -m planner kv` does. --cudagraph-max-tokens N sets the largest CUDA-graph step (0: none) after
the measurement, so the prefill fit gains its eager-step term from the stored points: one file alone
refits it (`merge P --cudagraph-max-tokens 512 --output P2`); the notes say the bound was set later.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from planner.kv_refit import kv_model_from_pd
from planner.profile_model import (
    DecodePoint,
    FrontendModel,
    PrefillPoint,
    Profile,
    ProfileError,
    build_profile,
    invoked_command,
    load_profile,
)
from planner.profile_run import cudagraph_bound, fit_frontend

SAME_CONTEXT = 0.05  # decode points at the same batch and contexts this close are one measurement


def add_merge_parser(sub: Any) -> None:
    p = sub.add_parser("merge", help="one profile from several profile runs of the same instance",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("profiles", nargs="+", type=Path, help="measured profile files, earliest first")
    p.add_argument("--output", type=Path, required=True, help="profile JSON to write")
    p.add_argument(
        "--pd-result", type=Path, default=None, help="a measured P/D run: derive the KV side again"
    )
    p.add_argument(
        "--cudagraph-max-tokens",
        type=int,
        default=None,
        help="set the measured server's largest CUDA-graph step (0: none) and refit (default: as stored)",
    )


def check_compatible(profiles: list[tuple[Path, Profile]]) -> None:
    """Raise ProfileError unless every profile measured the same model, GPU, vLLM and engine limits."""
    (first_path, first), *rest = profiles
    for path, prof in rest:
        for what, a, b in (
            ("model", first.provenance.model, prof.provenance.model),
            ("GPU", first.provenance.gpu, prof.provenance.gpu),
            ("vLLM version", first.provenance.vllm_version, prof.provenance.vllm_version),
            ("source", first.provenance.source, prof.provenance.source),
            ("engine limits", first.engine, prof.engine),
        ):
            if a != b:
                raise ProfileError(
                    f"{path} and {first_path} differ in {what} ({b} vs {a}): profiles of different "
                    "instances cannot be merged; profile the same server again"
                )


def merged_prefill(profiles: list[Profile]) -> list[PrefillPoint]:
    by_len: dict[int, PrefillPoint] = {}
    for prof in profiles:
        by_len.update({p.prompt_tokens: p for p in prof.prefill_points})
    return [by_len[n] for n in sorted(by_len)]


def merged_decode(profiles: list[Profile]) -> list[DecodePoint]:
    points: list[DecodePoint] = []
    for prof in profiles:
        for new in prof.decode_points:
            points = [p for p in points if not _same_decode(p, new)] + [new]
    return sorted(points, key=lambda p: (p.batch, p.context_tokens))


def _same_decode(a: DecodePoint, b: DecodePoint) -> bool:
    return a.batch == b.batch and abs(a.context_tokens - b.context_tokens) <= SAME_CONTEXT * b.context_tokens


def frontend_points(prof: Profile) -> tuple[list[tuple[int, float]], bool]:
    """The API-server points, and whether they were measured (else the fit at the prefill sizes)."""
    if prof.frontend.points:
        return list(prof.frontend.points), True
    if prof.frontend.zero:
        return [], True
    return [(p.prompt_tokens, prof.frontend.delay_s(p.prompt_tokens)) for p in prof.prefill_points], False


def merged_frontend(profiles: list[tuple[Path, Profile]]) -> FrontendModel:
    by_len: dict[int, float] = {}
    stand_ins = []
    for path, prof in profiles:
        points, measured = frontend_points(prof)
        by_len.update(dict(points))
        if not measured:
            stand_ins.append(path.name)
    fe = fit_frontend(sorted(by_len.items()))
    if stand_ins:
        fe = replace(fe, source=f"{fe.source}; for {', '.join(stand_ins)} its fit at its prefill sizes "
                     "(schema 2 kept no points)")  # fmt: skip
    return fe


def merge_profiles(
    paths: list[Path],
    pd_result: Path | None = None,
    command: str = "",
    cudagraph_max_tokens: int | None = None,
) -> Profile:
    profiles = [(p, load_profile(p)) for p in paths]
    check_compatible(profiles)
    base = profiles[0][1]
    engine = base.engine
    frontend = merged_frontend(profiles)
    runs = "; ".join(f"{p} (created {prof.provenance.created_iso or '?'})" for p, prof in profiles)
    notes = [f"merged from {runs} by `python -m planner merge`"]
    notes += [f"{p.name}: {prof.provenance.notes}" for p, prof in profiles if prof.provenance.notes]
    if cudagraph_max_tokens is not None:
        bound, why = cudagraph_bound(cudagraph_max_tokens, engine.max_num_seqs, gpu=True)
        later = f"{why} set by `planner merge` after the measurement (was {engine.cudagraph_max_tokens})"
        engine = replace(engine, cudagraph_max_tokens=bound, source=f"{engine.source}; {later}")
        notes.append(later)
    clocks = {str(prof.provenance.clocks) for _, prof in profiles}
    if len(clocks) > 1:
        notes.append(f"clocks differed between the runs: {' / '.join(sorted(clocks))}")
    provenance = replace(
        base.provenance,
        created_iso=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command or base.provenance.command,
        notes="; ".join(n for n in notes if n),
    )
    merged = build_profile(
        provenance,
        engine,
        merged_prefill([p for _, p in profiles]),
        merged_decode([p for _, p in profiles]),
        base.kv_transfer,
        [w for _, prof in profiles for w in prof.power_points],
        base.power.reason,
        base.kv_points,
        frontend,
        base.decode.routing,
        next((prof.loop for _, prof in profiles if prof.loop.per_output_s), None),  # a run that probed it
    )
    if pd_result is None:
        note = f"KV side as in {paths[0]}, derived against its own models (redo with --pd-result)"
        return replace(merged, provenance=replace(provenance, notes=f"{provenance.notes}; {note}"))
    kv, points = kv_model_from_pd(
        pd_result,
        list(merged.decode_points),
        merged.kv_transfer.bytes_per_token,
        merged.frontend,
        merged.client_prefill_s,
        merged.decode.routing,
    )
    note = f"KV side derived from {pd_result} against the merged models"
    provenance = replace(provenance, notes=f"{provenance.notes}; {note}")
    return replace(merged, kv_transfer=kv, kv_points=tuple(points), provenance=provenance)


def cmd_merge(args: argparse.Namespace) -> int:
    command = invoked_command()
    prof = merge_profiles(list(args.profiles), args.pd_result, command, args.cudagraph_max_tokens)
    out = prof.save(args.output)
    print(prof.describe())
    print(f"profile: {out}")
    return 0

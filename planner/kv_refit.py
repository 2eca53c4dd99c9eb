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
from dataclasses import replace
from pathlib import Path
from typing import Any

from planner.kv_transfer import carried_kv
from planner.profile_model import KvPoint, load_profile
from planner.profile_run import kv_model_from_pd


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

"""`python -m planner kv --profile P --pd-result RUN --output P2`: the profile's KV side, from a P/D run.

The KV transfer model and the prefill side (its own latency and whether it holds finished prompts) come
from a measured P/D pair's stage timings, read against the profile's own prefill, decode and API-server
models. This redoes that part offline: for another P/D run, another connector (NIXL beside P2P NCCL), or
after a change of how it is derived. Everything else, raw points included, is kept as measured.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from planner.profile_model import load_profile
from planner.profile_run import kv_model_from_pd


def add_kv_parser(sub: Any) -> None:
    p = sub.add_parser("kv", help="redo a profile's KV transfer and prefill side from a measured P/D run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--profile", type=Path, required=True, help="measured profile JSON")
    p.add_argument("--pd-result", type=Path, required=True, help="a measured P/D run directory")
    p.add_argument("--output", type=Path, required=True, help="profile JSON to write (may be --profile)")


def cmd_kv(args: argparse.Namespace) -> int:
    prof = load_profile(args.profile)
    kv, points = kv_model_from_pd(args.pd_result, list(prof.decode_points), prof.kv_transfer.bytes_per_token,
                                  prof.frontend, prof.client_prefill_s, prof.decode.routing)  # fmt: skip
    note = f"KV side redone from {args.pd_result} by `python -m planner kv`"
    provenance = replace(prof.provenance, notes="; ".join(n for n in (prof.provenance.notes, note) if n))
    new = replace(prof, kv_transfer=kv, kv_points=tuple(points), provenance=provenance)
    out = new.save(args.output)
    print(new.describe())
    print(f"profile: {out}")
    return 0

"""The server side of a comparison as markdown: vLLM's own view per instance, where TTFT goes from both
sides, the decode side's first chunk and KV transfer cost, and the prefill instance beside independent
ones. `server_sections` is report.md's section.

    python -m analysis.server_report results/h200x2/frontier/prefill-heavy/*/*   # the sections, printed
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from analysis.connector_cost import NVLINK_GBPS, FirstChunkSplit, first_chunk_split
from analysis.markdown import fmt, md_table
from analysis.prefill_inflation import PrefillRow, explanation, prefill_rows
from analysis.prometheus import Quantile
from analysis.runs import NA, CompareError, Run, load_runs, short_reason
from analysis.server_view import InstanceView, instance_views, missing_reason
from analysis.ttft_sides import SideRow, ttft_sides
from testbed.cli_errors import OneLineErrorParser

Cell = float | Quantile | NA | None
VIEW_TITLE = "## vLLM's own view (server /metrics over each run)"
SIDES_TITLE = "## Where TTFT goes, from both sides"
CHUNK_TITLE = "## The decode side's first chunk and the KV transfer"
PREFILL_TITLE = "## The prefill instance beside independent instances"
SECTION_TITLES = (VIEW_TITLE, SIDES_TITLE, CHUNK_TITLE, PREFILL_TITLE)

# (column title, phase, statistic); front end and the external KV share follow TTFT and inference
VIEW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("queue mean (ms)", "queue", "mean"),
    ("queue p50", "queue", "p50"),
    ("queue p90", "queue", "p90"),
    ("prefill mean (ms)", "prefill", "mean"),
    ("prefill p50", "prefill", "p50"),
    ("prefill p90", "prefill", "p90"),
    ("TTFT mean (ms)", "ttft", "mean"),
    ("TTFT p50", "ttft", "p50"),
    ("TTFT p90", "ttft", "p90"),
    ("decode mean (ms)", "decode", "mean"),
    ("decode p50", "decode", "p50"),
    ("decode p90", "decode", "p90"),
    ("inference mean (ms)", "inference", "mean"),
)
VIEW_HEADER = [
    "run",
    "instance",
    "requests",
    *(title for title, _, _ in VIEW_COLUMNS),
    "front end (ms)",
    "prompt tokens from external KV (%)",
]
VIEW_NOTE = (
    "vLLM's definitions: queue = queued -> first scheduled; prefill = first scheduled -> first token (the "
    "whole engine step, shared by every request batched in it); TTFT = arrival at the API server -> first "
    "token; front end = TTFT - queue - prefill (HTTP, tokenization, hand-over). Means are sum / count of "
    "the run's deltas. Quantiles are interpolated within histogram buckets as Prometheus' "
    "histogram_quantile does, shown as value (bucket); vLLM's queue, prefill and decode buckets start at "
    '300 ms, so below that only "< 300" is known.'
)


def fmt_cell(value: Cell) -> str:
    """A number, n/a with a short reason, or a bucket quantile: "< upper" in the first bucket, "> edge" in
    the +Inf bucket, else "value (lower-upper)"."""
    if isinstance(value, NA):
        return f"n/a ({short_reason(value.reason, 32)})" if value.reason else "n/a"
    if not isinstance(value, Quantile):
        return fmt(value)
    if value.lower == 0:
        return f"< {fmt(value.upper)}"
    if value.upper == float("inf"):
        return f"> {fmt(value.lower)}"
    return f"{fmt(value.value)} ({fmt(value.lower)}-{fmt(value.upper)})"


def fmt_count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _stat(view: InstanceView, key: str, stat: str) -> Cell:
    phase = view.phase(key)
    if isinstance(phase, NA):
        return phase
    return getattr(phase, stat)


def _share(view: InstanceView) -> Cell:
    share = view.external_share
    return share if isinstance(share, NA) else 100.0 * share


def view_rows(runs: Sequence[Run]) -> tuple[list[list[str]], list[str]]:
    """One row per instance of each run with server metrics, and the notes: each reason once, with the
    instances it applies to."""
    rows: list[list[str]] = []
    where: dict[str, list[str]] = {}
    for run in runs:
        reason = missing_reason(run.result)
        if reason:
            where.setdefault(reason, []).append(run.label)
            continue
        for v in instance_views(run.result):
            name = f"{run.label} {v.label}"
            if v.error:
                rows.append([run.label, v.label, f"n/a ({short_reason(v.error, 32)})"])
                rows[-1] += [""] * (len(VIEW_HEADER) - 3)
                where.setdefault(v.error, []).append(name)
                continue
            cells: list[Cell] = [_stat(v, key, stat) for _, key, stat in VIEW_COLUMNS]
            cells += [v.front_end_ms, _share(v)]
            rows.append([run.label, v.label, fmt_count(v.requests), *map(fmt_cell, cells)])
            for c in cells:
                if isinstance(c, NA) and c.reason:
                    where.setdefault(c.reason, []).append(name)
            if v.role_source != "serving setup":
                where.setdefault(f"role {v.role_source}", []).append(name)
    notes = []
    for reason, names in where.items():
        unique = list(dict.fromkeys(names))
        scope = ", ".join(unique) if len(unique) <= 3 else f"{len(unique)} instances"
        notes.append(f"{reason}: {scope}")
    return rows, notes


def sides_table(rows: list[SideRow]) -> list[str]:
    body = [
        [("↳ " if r.depth else "") + r.part, r.source, fmt_cell(r.mean), fmt_cell(r.p50), fmt_cell(r.p90)]
        for r in rows
    ]
    return md_table(["part", "measured by", "mean (ms)", "p50 (ms)", "p90 (ms)"], body)


FIRST_CHUNK_HEADER = [
    "run",
    "connector",
    "first chunk (ms)",
    "D queue",
    "KV transfer",
    "first step",
    "D front end",
    "outside D",
    "KV MB/request",
    "GB/s",
    f"of NVLink {NVLINK_GBPS:g} GB/s (%)",
]


def _first_chunk_cells(label: str, s: FirstChunkSplit) -> list[str]:
    mark = "" if s.transfer_source.startswith("measured") else "≈ "
    inferred_or_measured = [mark + fmt_cell(s.kv_transfer_ms), mark + fmt_cell(s.first_step_ms)]
    mb = s.kv_bytes_per_request / 1e6 if isinstance(s.kv_bytes_per_request, float) else s.kv_bytes_per_request
    share = None if s.nvlink_share is None else 100.0 * s.nvlink_share
    return [
        label,
        s.connector,
        fmt_cell(s.first_chunk_ms),
        fmt_cell(s.d_queue_ms),
        *inferred_or_measured,
        fmt_cell(s.d_front_end_ms),
        fmt_cell(s.outside_d_ms),
        fmt_cell(mb),
        mark + fmt_cell(s.gbps),
        mark + fmt_cell(share),
    ]


def first_chunk_splits(runs: Sequence[Run]) -> list[tuple[Run, FirstChunkSplit]]:
    """The P/D runs with their decode side's first-chunk split."""
    return [(run, split) for run in runs if (split := first_chunk_split(run)) is not None]


def first_chunk_rows(splits: Sequence[tuple[Run, FirstChunkSplit]]) -> tuple[list[list[str]], list[str]]:
    rows, notes = [], []
    for run, split in splits:
        rows.append(_first_chunk_cells(run.label, split))
        notes += [f"KV transfer: {split.transfer_source}", f"KV bytes: {split.bytes_source}"]
        if isinstance(split.queue_beside_transfer_ms, float):
            notes.append(f"{run.label}: D queue beside the transfer {fmt(split.queue_beside_transfer_ms)} ms")
        notes += [n if n.startswith(split.connector) else f"{run.label}: {n}" for n in split.notes]
    return rows, list(dict.fromkeys(n for n in notes if not n.endswith(": ")))


NIXL_HEADER = [
    "run",
    "transfers",
    "transfer mean (ms)",
    "transfer p90 (ms)",
    "post mean (ms)",
    "descriptors per transfer",
    "scattered (%)",
    "MB per transfer",
    "GB/s",
    "failed transfers / notifications",
    "expired leases",
]


def nixl_rows(splits: Sequence[tuple[Run, FirstChunkSplit]]) -> list[list[str]]:
    """NIXL's own transfer telemetry per run (the side that moved the KV): descriptors per transfer is
    what NIXL posted after merging adjacent blocks, so it shows how scattered the blocks were."""
    rows = []
    for run, split in splits:
        n = split.nixl
        if n is None or not n.transfers:
            continue
        mb = None if n.bytes_per_transfer is None else n.bytes_per_transfer / 1e6
        rows.append(
            [
                run.label,
                f"{n.transfers:g}",
                fmt_cell(n.xfer_ms),
                fmt_cell(n.xfer_p90_ms),
                fmt_cell(n.post_ms),
                fmt_cell(n.descriptors),
                fmt_cell(100.0 * split.scatter if isinstance(split.scatter, float) else split.scatter),
                fmt_cell(mb),
                fmt_cell(n.gbps),
                f"{n.failed_transfers:g} / {n.failed_notifications:g}",
                f"{n.kv_expired:g}",
            ]
        )
    return rows


PREFILL_HEADER = [
    "tokens in -> out",
    "rate (req/s)",
    "run",
    "prefilling instances",
    "prefill mean (ms, vLLM)",
    "queue mean (ms)",
    "front end (ms)",
    "timed interval",
    "mean interval (ms)",
    "overlapping another (%)",
    "solo median (ms)",
    "overlapping pairs",
    "pair end gap median (ms)",
]


def _prefill_cells(r: PrefillRow) -> list[str]:
    e = r.evidence
    evidence = ["n/a"] * 5
    if e is not None:
        evidence = [fmt_cell(e.mean_ms), fmt_cell(100.0 * e.overlapped_share), fmt_cell(e.solo_median_ms)]
        evidence += [fmt_count(e.pairs), fmt_cell(e.pair_end_gap_ms)]
    return [
        r.workload,
        "n/a" if r.rate is None else f"{r.rate:g}",
        r.label,
        str(r.instances),
        fmt_cell(r.prefill_ms),
        fmt_cell(r.queue_ms),
        fmt_cell(r.front_end_ms),
        e.interval if e is not None else "no records",
        *evidence,
    ]


def server_sections(runs: Sequence[Run]) -> list[str]:
    """report.md's server-side sections (markdown lines); empty when no run stored server metrics."""
    if all(missing_reason(r.result) for r in runs):
        return []
    out = [VIEW_TITLE, "", VIEW_NOTE, ""]
    rows, notes = view_rows(runs)
    out += [*md_table(VIEW_HEADER, rows), ""]
    out += [*(f"- {n}" for n in notes), ""] if notes else []
    sides = [(run, rows) for run in runs if (rows := ttft_sides(run))]
    if sides:
        out += [SIDES_TITLE, ""]
        out += [
            "The proxy's legs beside each instance's own split; ↳ rows lie inside the leg above. Means add "
            "up, quantiles do not.",
            "",
        ]
        for run, side in sides:
            out += [f"**{run.label}**", "", *sides_table(side), ""]
    splits = first_chunk_splits(runs)
    chunk_rows, chunk_notes = first_chunk_rows(splits)
    if chunk_rows:
        out += [CHUNK_TITLE, ""]
        out += [*md_table(FIRST_CHUNK_HEADER, chunk_rows), ""]
        out += ["≈: inferred or computed, not measured.", "", *(f"- {n}" for n in chunk_notes), ""]
        nixl = nixl_rows(splits)
        if nixl:
            out += ["NIXL's own telemetry (the p90 is interpolated within histogram buckets):", ""]
            out += [*md_table(NIXL_HEADER, nixl), ""]
            out += [
                "Scattered: descriptors per transfer over layers x blocks moved. vLLM asks NIXL for one "
                "region per layer and block and NIXL merges adjacent ones: near 0% the blocks were "
                "contiguous (a fresh pool), 100% no two were adjacent (a pool that many requests have "
                "shuffled), which costs the posting side CPU time and the transfer time.",
                "",
            ]
    prefill = prefill_rows(list(runs))
    if any(r.kind == "xpyd" for r in prefill):
        out += [PREFILL_TITLE, ""]
        out += [*md_table(PREFILL_HEADER, [_prefill_cells(r) for r in prefill]), ""]
        text = explanation(prefill)
        out += [text, ""] if text else []
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(
        prog="python -m analysis.server_report",
        description="Print the server-side sections for result directories.",
    )
    parser.add_argument("results", nargs="+", help="result.json files or run directories")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.results)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(server_sections(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

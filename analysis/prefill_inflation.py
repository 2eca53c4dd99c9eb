"""Why a P/D pair's prefill instance reports a longer prefill time than an independent instance.

Two sources side by side, per run and offered rate:
- vLLM's view of the instances doing the prefills (P in a P/D pair; every instance of a single instance
  or of replicas): mean prefill and queue time, and the front end (TTFT - queue - prefill);
- the records: each request's prefill interval on its instance (P/D: the proxy's prefill leg; otherwise
  the client's send -> first token, grouped by the instance the proxy chose). From them: how many
  prefills overlapped another on the same instance, how long a prefill that overlapped none took, and,
  for isolated pairs of overlapping prefills that did not start together, how far apart they ended.
  Batching alone shows on any instance: the earlier prefill ends about one step before the later one. A
  pair that ends together means the earlier one was held until the later one finished.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from analysis.runs import Run
from analysis.server_view import pooled_mean, role_views
from experiments.schema import AGGREGATED_KINDS, Record

SAME_STEP_MS = 5.0  # pairs whose starts are closer than this likely shared one engine step
MIN_PAIRS = 5  # overlapping pairs needed before their end gap is read
HELD_MS = 5.0  # an end gap under this: the pair ended together
INFLATED = 1.2  # P's mean prefill time over an independent instance's above this: inflated
# Rows by setup kind: the independent instances (single, replicas), then the P/D pair they explain.
ROW_ORDER = (*AGGREGATED_KINDS, "xpyd")


@dataclass(frozen=True)
class OverlapEvidence:
    """Prefill intervals on each instance, from the records (ms)."""

    interval: str  # what was timed
    count: int
    mean_ms: float
    overlapped_share: float  # prefills overlapping another on the same instance
    solo_median_ms: float | None  # prefills overlapping none
    pairs: int  # isolated overlapping pairs not started together
    pair_end_gap_ms: float | None  # median: later end - earlier end
    pair_first_ms: float | None  # median interval of the earlier prefill of a pair


def _intervals(records: list[Record], kind: str) -> dict[str, np.ndarray]:
    groups: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        if not r.measured or not r.succeeded:
            continue
        s = r.stages
        if kind == "xpyd":
            if s is None or s.t_prefill_start_mono_ns is None or s.t_prefill_end_mono_ns is None:
                continue
            groups[s.prefill_url or "P"].append((s.t_prefill_start_mono_ns, s.t_prefill_end_mono_ns))
        else:
            key = (s.decode_url if s is not None else None) or "the instance"
            groups[key].append((r.sent_mono_ns, r.first_token_mono_ns))  # type: ignore[arg-type]
    return {k: np.array(sorted(v), dtype=np.float64) / 1e6 for k, v in groups.items() if v}


def isolated_pairs(iv: np.ndarray) -> list[tuple[float, float, float]]:
    """(start gap, earlier interval, end gap) of pairs overlapping each other and nothing else."""
    out = []
    start, end = iv[:, 0], iv[:, 1]
    for i in range(len(iv) - 1):
        alone_before = i == 0 or end[:i].max() < start[i]
        alone_after = i + 2 >= len(iv) or start[i + 2] > max(end[i], end[i + 1])
        if start[i + 1] < end[i] and alone_before and alone_after:
            out.append((start[i + 1] - start[i], end[i] - start[i], end[i + 1] - end[i]))
    return out


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def overlap_evidence(run: Run) -> OverlapEvidence | None:
    """The overlap evidence of a run; None when no record carries a prefill interval."""
    groups = _intervals(run.result.records, run.setup_kind)
    if not groups:
        return None
    solo: list[float] = []
    total = 0.0
    pairs: list[tuple[float, float, float]] = []
    count = overlapped = 0
    for iv in groups.values():
        start, end = iv[:, 0], iv[:, 1]
        for i in range(len(iv)):
            others = np.sum((start < end[i]) & (end > start[i])) - 1
            overlapped += others > 0
            if others == 0:
                solo.append(end[i] - start[i])
        count += len(iv)
        total += float(np.sum(end - start))
        pairs += [p for p in isolated_pairs(iv) if p[0] > SAME_STEP_MS]
    return OverlapEvidence(
        interval="proxy prefill leg" if run.setup_kind == "xpyd" else "client TTFT",
        count=count,
        mean_ms=total / count,
        overlapped_share=overlapped / count,
        solo_median_ms=_median(solo),
        pairs=len(pairs),
        pair_end_gap_ms=_median([p[2] for p in pairs]),
        pair_first_ms=_median([p[1] for p in pairs]),
    )


@dataclass(frozen=True)
class PrefillRow:
    """One run: the prefilling instances' own times (vLLM, ms) beside the records' overlap evidence."""

    label: str  # the run's label in the comparison
    workload: str  # "2048 -> 256": rows are compared only within one workload
    setup: str
    kind: str
    rate: float | None
    instances: int
    prefill_ms: float | None
    queue_ms: float | None
    front_end_ms: float | None
    evidence: OverlapEvidence | None


def prefill_row(run: Run) -> PrefillRow | None:
    """The row of a run whose prefilling instances have server metrics; None otherwise."""
    role = "prefill" if run.setup_kind == "xpyd" else "serving"
    views = role_views(run.result, role)
    if not views:
        return None
    ttft, queue, prefill = (pooled_mean(views, k) for k in ("ttft", "queue", "prefill"))
    front = None if ttft is None or queue is None or prefill is None else ttft - queue - prefill
    kind, value = run.load
    rate = value if kind == "rate" and value is not None and math.isfinite(value) else None
    wl = run.config.workload
    return PrefillRow(
        label=run.label,
        workload=f"{_length(wl.input_len)} -> {_length(wl.output_len)}",
        setup=run.setup_name,
        kind=run.setup_kind,
        rate=rate,
        instances=len(views),
        prefill_ms=prefill,
        queue_ms=queue,
        front_end_ms=front,
        evidence=overlap_evidence(run),
    )


def _length(n: int | tuple[int, int]) -> str:
    return f"{n[0]}:{n[1]}" if isinstance(n, tuple) else str(n)


def prefill_rows(runs: list[Run]) -> list[PrefillRow]:
    """Rows of every run that has them, by workload, rate, then setup kind (single, replicas, P/D)."""
    rows = [row for run in runs if (row := prefill_row(run)) is not None]
    order = {kind: i for i, kind in enumerate(ROW_ORDER)}
    return sorted(
        rows,
        key=lambda r: (
            r.workload,
            r.rate if r.rate is not None else math.inf,
            order.get(r.kind, len(order)),
            r.label,
        ),
    )


def _at(rows: list[PrefillRow], kind: str, rate: float) -> PrefillRow | None:
    return next((r for r in rows if r.kind == kind and r.rate == rate), None)


def _pairs(row: PrefillRow | None) -> int:
    return row.evidence.pairs if row is not None and row.evidence is not None else 0


def explanation(rows: list[PrefillRow]) -> str | None:
    """A paragraph per workload stating what the numbers show, at the lowest rate where the P/D run and
    an independent instance each have MIN_PAIRS overlapping pairs: replicas (the same total load on
    independent instances) when some rate has them, else the single instance; None without such a rate."""
    paragraphs = []
    for workload in dict.fromkeys(r.workload for r in rows):
        found = _explain_workload([r for r in rows if r.workload == workload])
        if found:
            paragraphs.append(found)
    return "\n\n".join(paragraphs) or None


def _explain_workload(rows: list[PrefillRow]) -> str | None:
    rates = sorted({r.rate for r in rows if r.kind == "xpyd" and r.rate is not None})
    for kind in ("replicas", "single"):
        for rate in rates:
            pd, base = _at(rows, "xpyd", rate), _at(rows, kind, rate)
            if pd is not None and base is not None and min(_pairs(pd), _pairs(base)) >= MIN_PAIRS:
                others = [r for r in (_at(rows, k, rate) for k in ("replicas", "single")) if r is not None]
                return _paragraph(pd, base, rate, others)
    return None


def _n(x: float | None, unit: str = " ms") -> str:
    if x is None:
        return "n/a"
    return f"{x:.1f}{unit}" if abs(x) < 10 else f"{x:.0f}{unit}"


def _paragraph(pd: PrefillRow, base: PrefillRow, rate: float, others: list[PrefillRow]) -> str:
    e, b = pd.evidence, base.evidence
    assert e is not None and b is not None
    other = base.setup
    inflated = pd.prefill_ms is not None and base.prefill_ms and pd.prefill_ms > INFLATED * base.prefill_ms
    gap_pd, gap_base = e.pair_end_gap_ms, b.pair_end_gap_ms
    held = (
        gap_pd is not None and gap_base is not None and gap_pd < HELD_MS and gap_base > 4 * gap_pd + HELD_MS
    )
    out = [
        f"At {rate:g} req/s ({pd.workload} tokens) the prefill instance of {pd.setup} reports a mean "
        f"prefill time of {_n(pd.prefill_ms)} against "
        + " and ".join(f"{_n(o.prefill_ms)} on {o.setup}" for o in others)
        + f" (queue {_n(pd.queue_ms)} vs {_n(base.queue_ms)})"
        + (", inflated." if inflated else ", not inflated."),
        f"A prefill that overlaps no other takes {_n(e.solo_median_ms)} on P ({e.interval}, median) against "
        f"{_n(b.solo_median_ms)} on {other} ({b.interval}).",
        f"{e.overlapped_share:.0%} of P's prefills overlap another one; in isolated overlapping pairs the "
        f"earlier request ends {_n(gap_pd)} before the later one on P (median of {e.pairs} pairs), against "
        f"{_n(gap_base)} on {other} ({b.pairs} pairs).",
    ]
    if not held:
        return " ".join([*out, "The end gaps do not show the earlier prefill held on P."])
    out += [
        "So on P the earlier prefill is held until the later one finishes; batching alone would show the "
        "same end gap on an independent instance.",
        "The hold is inside P's engine core: vLLM stamps both ends of its prefill time there (first "
        f"scheduled -> the step output carrying the first token), while P's front end is "
        f"{_n(pd.front_end_ms)} ({_n(base.front_end_ms)} on {other}).",
    ]
    if inflated:
        out.append(
            f"For scale: P's mean prefill leg exceeds its solo one by {_excess(pd)}, and P's mean prefill "
            f"time exceeds that of {other} by {_n(_minus(pd.prefill_ms, base.prefill_ms))}."
        )
    else:
        out.append(
            "Here P's prefills are otherwise faster than on instances that also decode, and the hold does "
            "not lift P's mean above theirs."
        )
    out.append(
        "Which part of P holds the output (the P2P NCCL producer's save path, or the engine's step and "
        "output handling) is not visible in these metrics."
    )
    return " ".join(out)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _excess(row: PrefillRow) -> str:
    """Mean prefill interval minus the solo median, from the same evidence (ms)."""
    e = row.evidence
    if e is None or e.solo_median_ms is None:
        return "n/a"
    return f"{e.mean_ms - e.solo_median_ms:.0f} ms"

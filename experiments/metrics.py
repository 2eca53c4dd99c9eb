"""Run-level metrics from records, with vLLM's `calculate_metrics` definitions: `Summary` and the
proxy's `StageSummary`.

Per-request definitions (TTFT, TPOT, ITL, E2EL, success) are the `Record`'s own fields
(experiments.schema.records). Here: a run's counts, throughputs and goodput = requests/s meeting every
given SLO, where a request with one output token has no TPOT and passes the TPOT SLO (as in vLLM).
Distributions use np.std (population) and np.percentile (linear). Every figure counts the same requests:
the measured ones that succeeded (`successes`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from experiments.schema import STAGE_KEYS, Distribution, PathStats, Record, StageSummary, Summary
from experiments.schema.records import chunk_counts
from experiments.schema.summary import proxy_retried_count, send_span_s
from experiments.slo import SLO_METRIC, check_slo, slo_met

NS_PER_S = 1_000_000_000


def successes(records: Iterable[Record]) -> list[Record]:
    """The measured requests that succeeded: what `Summary.completed` and every per-request energy
    figure count."""
    return [r for r in records if r.measured and r.succeeded]


def slo_arrays(records: Sequence[Record]) -> dict[str, np.ndarray]:
    """The metrics an SLO bounds, one entry per record, as `experiments.slo.slo_met` reads them: NaN
    where a record has none, and a NaN TTFT for a request that failed (it misses every SLO)."""

    def value(r: Record, field: str) -> float:
        v = getattr(r, field)
        return np.nan if v is None or (field == "ttft_ms" and not r.succeeded) else float(v)

    return {f: np.array([value(r, f) for r in records], dtype=float) for f in SLO_METRIC.values()}


def meets_slo(record: Record, slo: Mapping[str, float]) -> bool:
    """Whether one request succeeded and meets every SLO in `slo` (ms): `slo_met` on one record."""
    return bool(slo_met(slo_arrays([record]), slo)[0])


def _pooled_itl_ms(good: Sequence[Record]) -> np.ndarray:
    gaps = [np.diff(np.asarray(r.chunk_mono_ns, dtype=np.int64)) for r in good if len(r.chunk_mono_ns) > 1]
    return np.concatenate(gaps) / 1e6 if gaps else np.zeros(0)


def compute_summary(records: Iterable[Record], slo: Mapping[str, float] | None = None) -> Summary:
    """A run's Summary: warm-up excluded; requests cancelled by an interruption counted apart from the
    failed ones; `duration_s` spans the first send to the last end over all measured records (failed
    and cancelled included); goodput only with an SLO (keys of `parse_slo`, ms)."""
    slo = dict(slo or {})
    check_slo(slo)
    records = list(records)
    measured = [r for r in records if r.measured]
    good = [r for r in measured if r.succeeded]
    chunks, coalesced = chunk_counts(good)
    failed = [r for r in measured if not r.succeeded and not r.cancelled]

    sends = [r.sent_mono_ns for r in measured if r.sent_mono_ns is not None]
    ends = [r.end_mono_ns for r in measured if r.end_mono_ns is not None]
    duration_s = (max(ends) - min(sends)) / NS_PER_S if sends and ends else None
    if duration_s is not None and duration_s <= 0:
        duration_s = None

    def present(key: str, rows: Iterable[Record] = good) -> list[float]:
        return [v for r in rows if (v := getattr(r, key)) is not None]

    return Summary(
        measured=len(measured),
        warmup_excluded=len(records) - len(measured),
        completed=len(good),
        failed=len(failed),
        cancelled=len(measured) - len(good) - len(failed),
        retried=sum(r.retries > 0 for r in measured),
        proxy_retried=proxy_retried_count(r.stages.retries if r.stages else None for r in measured),
        duration_s=duration_s,
        send_span_s=send_span_s(sends),
        total_input_tokens=sum(r.input_tokens or 0 for r in good),
        total_output_tokens=sum(r.output_tokens or 0 for r in good),
        good_requests=int(slo_met(slo_arrays(good), slo).sum()) if slo else None,
        slo=slo or None,
        errors=dict(Counter(str(r.failure)[:200] for r in failed)),
        ttft_ms=Distribution.of(present("ttft_ms")),
        tpot_ms=Distribution.of(present("tpot_ms")),
        itl_ms=Distribution.of(_pooled_itl_ms(good)),
        itl_req_avg_ms=Distribution.of(present("itl_req_avg_ms")),
        tbt_max_ms=Distribution.of(present("tbt_max_ms")),
        e2el_ms=Distribution.of(present("e2el_ms")),
        send_lateness_ms=Distribution.of(present("send_lateness_ms", measured)),
        chunks=chunks,
        coalesced_chunks=coalesced,
    )


def stage_summary(records: Iterable[Record]) -> StageSummary | None:
    """Distributions of the proxy's stage timings over the measured successful requests that carry
    them, and the TTFT part the proxy cannot see; None when no record has stage timings."""
    rows = [r for r in successes(records) if r.stages is not None]
    if not rows:
        return None
    parts = {
        key: Distribution.of([v for r in rows if (v := getattr(r.stages, key)) is not None])
        for key in STAGE_KEYS
    }
    outside = []
    for r in rows:
        s = r.stages
        inside = sum(
            getattr(s, k) or 0.0 for k in ("prefill_ms", "decode_first_chunk_ms", "proxy_overhead_ms")
        )
        outside.append((r.first_token_mono_ns - r.sent_mono_ns) / 1e6 - inside)  # type: ignore[operator]
    by_path: dict[str, list[Record]] = {}
    for r in rows:
        if r.stages is not None and r.stages.path is not None:
            by_path.setdefault(r.stages.path, []).append(r)
    paths = {path: path_stats(group) for path, group in sorted(by_path.items())}
    return StageSummary(count=len(rows), client_side_ms=Distribution.of(outside), paths=paths, **parts)


def path_stats(records: Sequence[Record]) -> PathStats:
    """Count and latencies of successful requests (those of one path)."""

    def of(name: str) -> Distribution:
        return Distribution.of([v for r in records if (v := getattr(r, name)) is not None])

    return PathStats(
        count=len(records),
        ttft_ms=of("ttft_ms"),
        tpot_ms=of("tpot_ms"),
        e2el_ms=of("e2el_ms"),
        input_tokens=of("input_tokens"),
    )

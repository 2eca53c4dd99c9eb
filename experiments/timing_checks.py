"""Warnings, written into the result (and so the report), when something other than the server's work
at the offered load shaped a run's timing: chunks read in batches, requests sent late against their
schedule, or a run too short for its load to reach a steady state.

Thresholds, against the committed 2 x H200 frontier (results/h200x2/frontier, 32 runs, 1P1D, replicas
and one instance, 4-24 req/s): there at most 0.39% of chunks arrived coalesced and the send-lateness p99
was at most 0.93 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.schema import Record, Summary

# A coalesced chunk has the timestamp of the chunk before it: an ITL of exactly 0, and the gap before it
# holds two decode steps. At 1% of chunks, 1% of the pooled gaps are zeros and as many are doubled, so
# the ITL p99 (and TPOT's spread) that reports quote measure read batching (a server that flushed a burst,
# or a client too busy to read in time), not the decode step. 1% is 2.5x the worst H200 run.
COALESCED_SHARE_MAX = 0.01

# Send lateness is how long after its scheduled time a request left the client. Above 5 ms at p99 the
# arrival process is no longer the one asked for (the offered load is the client's), and each late request
# waited in the client, unseen by TTFT. 5 ms is 5x the worst H200 run and under 8% of the smallest TTFT
# p50 there (64.5 ms), so a healthy client on a GPU host never reaches it.
SEND_LATENESS_P99_MAX_MS = 5.0


def client_timing_warnings(summary: Summary, capped: bool = False) -> list[str]:
    """Warnings for `summary`; `capped`: a --max-concurrency cap delayed sends on purpose (no lateness
    warning then)."""
    out = []
    share = summary.coalesced_chunk_share
    if share is not None and share > COALESCED_SHARE_MAX:
        out.append(
            f"{share:.1%} of text chunks ({summary.coalesced_chunks} of {summary.chunks}) arrived in the "
            f"same network read as the chunk before them (above {COALESCED_SHARE_MAX:.0%}): their ITL is 0 "
            "and the gap before them doubled, so ITL percentiles show read batching (the server flushing "
            "bursts, or a client too busy to read), not decode steps; on a shared CPU host give the "
            "client its own core"
        )
    if summary.retried:
        out.append(
            f"{summary.retried} request(s) were sent again after their connection died before any answer "
            "(see each record's retries and retry_error): their TTFT counts from the first send"
        )
    late = summary.send_lateness_ms.p99
    if not capped and late is not None and late > SEND_LATENESS_P99_MAX_MS:
        out.append(
            f"send lateness p99 {late:.1f} ms (above {SEND_LATENESS_P99_MAX_MS:g} ms): the client sent "
            "requests late against their schedule, so the offered load was not the one asked for and "
            "TTFT misses the time requests waited in the client; run the client on a less loaded host "
            "or lower the rate"
        )
    return out


# A load's queues and batches fill over about one request lifetime (E2E) from the first arrival, and
# drain over one after the last. With arrivals lasting under 3 mean E2Es, more than a third of the run
# is ramp, and the latency and SLO attainment measured are a ramp's, not the offered load's: past
# saturation the queue never grows to what that load builds. Seen: 512 -> 1024 tokens on H200, 200
# requests at 12 req/s (17 s of arrivals, 10 s E2E), results/h200x2/frontier/decode-heavy-short.
STEADY_ARRIVALS_IN_E2E = 3.0


def steady_state_warning(records: Sequence[Record]) -> str | None:
    """A warning when the measured arrivals lasted under STEADY_ARRIVALS_IN_E2E mean E2E latencies."""
    ok = [r for r in records if r.succeeded and r.sent_mono_ns is not None and r.e2el_ms is not None]
    if len(ok) < 2:
        return None
    sent = [r.sent_mono_ns for r in ok]
    window_s = (max(sent) - min(sent)) / 1e9  # type: ignore[type-var, operator]
    e2e_s = sum(r.e2el_ms for r in ok) / len(ok) / 1e3  # type: ignore[misc]
    if e2e_s <= 0 or window_s >= STEADY_ARRIVALS_IN_E2E * e2e_s:
        return None
    rate = (len(ok) - 1) / window_s if window_s > 0 else None  # arrivals per second
    in_flight = rate * e2e_s if rate else float(len(ok))
    need = int(STEADY_ARRIVALS_IN_E2E * e2e_s * rate) + 1 if rate else None
    more = f"; at this rate about {need} requests would last long enough" if need else ""
    return (
        f"not a steady state: arrivals lasted {window_s:.1f} s, under {STEADY_ARRIVALS_IN_E2E:g} mean E2E "
        f"latencies ({e2e_s:.1f} s each); about {in_flight:.0f} requests are in flight at once at this "
        f"load against {len(ok)} in the run, so queues and batches never settle and latency and SLO "
        f"attainment are a ramp's, not this load's (optimistic past saturation){more}"
    )

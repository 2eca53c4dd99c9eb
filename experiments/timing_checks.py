"""Warnings, written into the result (and so the report), when something other than the server's work
shaped a run's timing: chunks read in batches, or requests sent late against their schedule.

Thresholds, against the committed 2 x H200 frontier (results/h200x2/frontier, 32 runs, 1P1D, replicas
and one instance, 4-24 req/s): there at most 0.39% of chunks arrived coalesced and the send-lateness p99
was at most 0.93 ms.
"""

from __future__ import annotations

from experiments.schema import Summary

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
    late = summary.send_lateness_ms.p99
    if not capped and late is not None and late > SEND_LATENESS_P99_MAX_MS:
        out.append(
            f"send lateness p99 {late:.1f} ms (above {SEND_LATENESS_P99_MAX_MS:g} ms): the client sent "
            "requests late against their schedule, so the offered load was not the one asked for and "
            "TTFT misses the time requests waited in the client; run the client on a less loaded host "
            "or lower the rate"
        )
    return out

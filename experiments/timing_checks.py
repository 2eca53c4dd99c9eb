"""Warnings, written into the result (and so the report), when something other than the server's work
at the offered load shaped a run's timing: chunks read in batches, requests sent late against their
schedule, or a run too short for its load to reach a steady state.

Thresholds, against the committed 2 x H200 frontier (results/h200x2/frontier, 32 runs, 1P1D, replicas
and one instance, 4-24 req/s): there at most 0.39% of chunks arrived coalesced and the send-lateness p99
was at most 0.93 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from experiments.schema import Record, RunWarning, Summary
from experiments.schema.run_warning import (
    COALESCED_CHUNKS,
    NOT_STEADY,
    PROXY_RETRIED,
    RETRIED,
    SEND_LATENESS,
)

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


def client_timing_warnings(summary: Summary, capped: bool = False) -> list[RunWarning]:
    """Warnings for `summary`; `capped`: a --max-concurrency cap delayed sends on purpose (no lateness
    warning then)."""
    out = []
    share = summary.coalesced_chunk_share
    if share is not None and share > COALESCED_SHARE_MAX:
        out.append(
            RunWarning(
                code=COALESCED_CHUNKS,
                observed=share,
                threshold=COALESCED_SHARE_MAX,
                message=f"{share:.1%} of text chunks ({summary.coalesced_chunks} of {summary.chunks}) "
                "arrived in the same network read as the chunk before them (above "
                f"{COALESCED_SHARE_MAX:.0%}): their ITL is 0 and the gap before them doubled, so ITL "
                "percentiles show read batching (the server flushing bursts, or a client too busy to read), "
                "not decode steps; on a shared CPU host give the client its own core",
            )
        )
    if summary.retried:
        out.append(
            RunWarning(
                code=RETRIED,
                observed=float(summary.retried),
                threshold=0.0,
                message=f"{summary.retried} request(s) were sent again after their connection died before "
                "any answer (see each record's retries and retry_error): their TTFT counts from the first "
                "send",
            )
        )
    if summary.proxy_retried:
        out.append(
            RunWarning(
                code=PROXY_RETRIED,
                observed=float(summary.proxy_retried),
                threshold=0.0,
                message=f"{summary.proxy_retried} request(s) had a leg retried by the proxy on another "
                "instance after it failed before any byte reached the client (see each record's "
                "stages.retries): their TTFT includes the failed leg; for a measured run start the proxy "
                "with --retries 0 (launcher: --proxy-args '--retries 0')",
            )
        )
    late = summary.send_lateness_ms.p99
    if not capped and late is not None and late > SEND_LATENESS_P99_MAX_MS:
        out.append(
            RunWarning(
                code=SEND_LATENESS,
                observed=late,
                threshold=SEND_LATENESS_P99_MAX_MS,
                message=f"send lateness p99 {late:.1f} ms (above {SEND_LATENESS_P99_MAX_MS:g} ms): the "
                "client sent requests late against their schedule, so the offered load was not the one "
                "asked for and TTFT misses the time requests waited in the client; run the client on a "
                "less loaded host or lower the rate",
            )
        )
    return out


# A load's queues and batches fill over about one request lifetime (E2E) from the first arrival, and
# drain over one after the last. With arrivals lasting under 3 mean E2Es, more than a third of the run
# is ramp, and the latency and SLO attainment measured are a ramp's, not the offered load's: past
# saturation the queue never grows to what that load builds. Seen: 512 -> 1024 tokens on H200, 200
# requests at 12 req/s (17 s of arrivals, 10 s E2E), results/h200x2/frontier/decode-heavy-short.
STEADY_ARRIVALS_IN_E2E = 3.0


@dataclass(frozen=True)
class Ramp:
    """A run whose arrivals lasted under STEADY_ARRIVALS_IN_E2E mean E2Es: a ramp, not its load."""

    window_s: float  # first to last arrival
    e2e_s: float  # mean E2E latency
    requests: int

    @property
    def rate(self) -> float | None:
        """Arrivals per second over the window (None when every request arrived at once)."""
        return (self.requests - 1) / self.window_s if self.window_s > 0 else None

    @property
    def requests_needed(self) -> int | None:
        """Requests at this rate whose arrivals would last STEADY_ARRIVALS_IN_E2E mean E2Es."""
        return math.ceil(STEADY_ARRIVALS_IN_E2E * self.e2e_s * self.rate) + 1 if self.rate else None

    def as_warning(self) -> RunWarning:
        """The warning a result stores: observed = the arrival window in mean E2Es."""
        return RunWarning(
            code=NOT_STEADY,
            observed=self.window_s / self.e2e_s,
            threshold=STEADY_ARRIVALS_IN_E2E,
            message=self.warning(),
        )

    def warning(self) -> str:
        in_flight = self.rate * self.e2e_s if self.rate else float(self.requests)
        need = self.requests_needed
        more = f"; at this rate about {need} requests would last long enough" if need else ""
        return (
            f"not a steady state: arrivals lasted {self.window_s:.1f} s, under {STEADY_ARRIVALS_IN_E2E:g} "
            f"mean E2E latencies ({self.e2e_s:.1f} s each); about {in_flight:.0f} requests are in flight at "
            f"once at this load against {self.requests} in the run, so queues and batches never settle and "
            f"latency and SLO attainment are a ramp's, not this load's (optimistic past saturation){more}"
        )


def find_ramp(arrival_s: Sequence[float] | np.ndarray, e2el_ms: Sequence[float] | np.ndarray) -> Ramp | None:
    """The one steady-state check, for measured and simulated runs alike: a Ramp when the arrivals (s, any
    origin) lasted under STEADY_ARRIVALS_IN_E2E times the mean of `e2el_ms`; None for a steady state or
    fewer than two requests."""
    arrivals = np.asarray(arrival_s, dtype=float)
    if len(arrivals) < 2:
        return None
    window_s = float(arrivals.max() - arrivals.min())
    e2e_s = float(np.nanmean(np.asarray(e2el_ms, dtype=float))) / 1e3
    if not e2e_s > 0 or window_s >= STEADY_ARRIVALS_IN_E2E * e2e_s:
        return None
    return Ramp(window_s, e2e_s, len(arrivals))


def steady_state_warning(records: Sequence[Record]) -> RunWarning | None:
    """`find_ramp` over the successful records (sent time and E2E), as a warning."""
    ok = [r for r in records if r.succeeded and r.sent_mono_ns is not None and r.e2el_ms is not None]
    found = find_ramp([r.sent_mono_ns / 1e9 for r in ok], [r.e2el_ms for r in ok])  # type: ignore[operator,misc]
    return found.as_warning() if found else None

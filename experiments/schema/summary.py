"""A run's metrics: counts, tokens, latency distributions, goodput; and the proxy's stage split.

Stored: what was counted and measured. Computed (written, never read back): the rates derived from
those counts and the run's duration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from experiments.schema.base import computed

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    """mean, median, std (population), min, max and linear percentiles; all None with count 0."""

    mean: float | None = None
    median: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    count: int = 0

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
        if arr.size == 0:
            return cls()
        p50, p90, p95, p99 = (float(v) for v in np.percentile(arr, PERCENTILES))
        return cls(
            mean=float(np.mean(arr)),
            median=float(np.median(arr)),
            std=float(np.std(arr)),
            min=float(np.min(arr)),
            max=float(np.max(arr)),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            count=int(arr.size),
        )

    def stat(self, name: str) -> float | None:
        """One statistic by name ("p50", "mean", ...)."""
        value = getattr(self, name)
        return None if value is None else float(value)


def send_span_s(sent_mono_ns: Iterable[int | None]) -> float | None:
    """First to last of the given send times, in s (None under two sends or a zero span)."""
    sends = [t for t in sent_mono_ns if t is not None]
    span = (max(sends) - min(sends)) / 1e9 if len(sends) > 1 else 0.0
    return span or None


def proxy_retried_count(stage_retries: Iterable[int | None]) -> int:
    """Requests whose leg the proxy retried: their stage record's `retries` > 0 (None: no record)."""
    return sum((n or 0) > 0 for n in stage_retries)


def _per_second(count: float | None, duration_s: float | None) -> float | None:
    return count / duration_s if count is not None and duration_s else None


@dataclass(slots=True, kw_only=True)
class Summary:
    """The run's metrics over its measured requests (warm-up excluded), times in ms.

    `completed` counts the measured requests that succeeded (vLLM's definition, `Record.succeeded`);
    every per-request figure, energy included, divides by it. `failed` counts the others, except those
    `cancelled` by an interruption of the run (in flight at Ctrl-C or SIGTERM: not the server's failure).
    `duration_s` spans the first send to the last end over all measured requests (failed and cancelled
    included), `send_span_s` their first to last send (`arrival_rate`: the load that actually arrived).
    `retried` counts the requests the client itself sent again (`Record.retries`), `proxy_retried` those
    our proxy retried a leg of on another instance (`StageTimes.retries`): either's TTFT includes the
    failed attempt. `good_requests` and `goodput` are None without an SLO. `chunks` counts the text chunks of
    the successful requests, `coalesced_chunks` those that arrived in the same network read as the chunk
    before them (the same timestamp: an ITL of exactly 0, set by read batching, not by the server's steps).
    """

    measured: int = 0
    warmup_excluded: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0  # measured requests the client sent again after their connection died unanswered
    proxy_retried: int = 0  # measured requests whose leg the proxy sent again to another instance
    duration_s: float | None = None
    send_span_s: float | None = None  # first to last send of the measured requests
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    good_requests: int | None = None
    slo: dict[str, float] | None = None
    errors: dict[str, int] = field(default_factory=dict)
    ttft_ms: Distribution = field(default_factory=Distribution)
    tpot_ms: Distribution = field(default_factory=Distribution)
    itl_ms: Distribution = field(default_factory=Distribution)  # pooled over requests
    itl_req_avg_ms: Distribution = field(default_factory=Distribution)
    tbt_max_ms: Distribution = field(default_factory=Distribution)
    e2el_ms: Distribution = field(default_factory=Distribution)
    send_lateness_ms: Distribution = field(default_factory=Distribution)
    chunks: int = 0
    coalesced_chunks: int = 0

    @computed
    def coalesced_chunk_share(self) -> float | None:
        """Share of text chunks that arrived in one read with the chunk before them (None: no chunks)."""
        return self.coalesced_chunks / self.chunks if self.chunks else None

    @computed
    def arrival_rate(self) -> float | None:
        """The offered load the client realized: (measured - 1) / the span of their sends (req/s)."""
        return _per_second(self.measured - 1, self.send_span_s) if self.measured > 1 else None

    @computed
    def request_throughput(self) -> float | None:
        return _per_second(self.completed, self.duration_s)

    @computed
    def output_throughput(self) -> float | None:
        return _per_second(self.total_output_tokens, self.duration_s)

    @computed
    def total_token_throughput(self) -> float | None:
        return _per_second(self.total_input_tokens + self.total_output_tokens, self.duration_s)

    @computed
    def goodput(self) -> float | None:
        """Requests per second meeting every SLO."""
        return _per_second(self.good_requests, self.duration_s)

    def distribution(self, name: str) -> Distribution:
        """A latency distribution by field name ("ttft_ms", "itl_ms", ...)."""
        value = getattr(self, name)
        if not isinstance(value, Distribution):
            raise KeyError(f"{name!r} is not a distribution of the summary")
        return value


STAGE_KEYS: tuple[str, ...] = ("prefill_ms", "decode_first_chunk_ms", "decode_total_ms", "proxy_overhead_ms")


@dataclass(slots=True, kw_only=True)
class PathStats:
    """The measured successful requests that took one path (the proxy's policy: split or local)."""

    count: int = 0
    ttft_ms: Distribution = field(default_factory=Distribution)
    tpot_ms: Distribution = field(default_factory=Distribution)
    e2el_ms: Distribution = field(default_factory=Distribution)
    input_tokens: Distribution = field(default_factory=Distribution)


@dataclass(slots=True, kw_only=True)
class StageSummary:
    """The proxy's stage timings over the measured successful requests that carry them (ms).

    `client_side_ms` is what the proxy cannot see: TTFT minus prefill, decode first chunk and proxy
    overhead (client <-> proxy network and event-loop time). `paths`: the requests per path the proxy's
    policy chose (`split`, `local`; empty from a proxy without policies), with their latencies.
    """

    count: int
    prefill_ms: Distribution = field(default_factory=Distribution)
    decode_first_chunk_ms: Distribution = field(default_factory=Distribution)
    decode_total_ms: Distribution = field(default_factory=Distribution)
    proxy_overhead_ms: Distribution = field(default_factory=Distribution)
    client_side_ms: Distribution = field(default_factory=Distribution)
    paths: dict[str, PathStats] = field(default_factory=dict)

    def distribution(self, name: str) -> Distribution:
        value = getattr(self, name)
        if not isinstance(value, Distribution):
            raise KeyError(f"{name!r} is not a stage of the summary")
        return value

"""vLLM's Prometheus series as a run stored them: counters, histograms and their quantiles.

A run keeps, per server, the change of each sample over the run (`ServerMetrics.deltas`), keyed
`name{labels}` the way `experiments.server_metrics.scrape` writes them: labels sorted, `engine` and
`model_name` dropped, and samples whose delta is zero left out. Two consequences handled here:
- a histogram's low buckets that saw no observation are absent, so a bucket's lower edge is not in the
  data; where the present edges fit vLLM's default layout, the missing low edges are put back with a
  zero count (otherwise the first bucket starts at 0, as Prometheus does with what it has). This assumes
  the server ran with vLLM's default buckets, which newer vLLM lets a user override;
- a missing `_sum` beside a present `_count` means the sum did not change (0).

Quantiles follow Prometheus' `histogram_quantile`: linear interpolation inside the bucket holding the
rank, 0 as the lower edge of the first bucket, the highest finite edge when the rank falls in +Inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

INF = math.inf

# vLLM's default bucket edges (v1/metrics/buckets.py; the same in 0.23 and 0.32, overridable by the
# user) and the NIXL connector's (nixl stats.py, NixlPromMetrics).
REQUEST_LATENCY = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
REQUEST_LATENCY += (120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
TIME_TO_FIRST_TOKEN = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
TIME_TO_FIRST_TOKEN += (7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
INTER_TOKEN_LATENCY = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)
INTER_TOKEN_LATENCY += (7.5, 10.0, 20.0, 40.0, 80.0)
NIXL_POST_TIME = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0)
NIXL_BYTES = tuple(float(2 ** (10 + i)) for i in range(1, 25, 2))
NIXL_DESCRIPTORS = (10, 20, 30, 50, 75, 100, 200, 400, 1000, 2000, 4000, 10000, 20000, 50000)
DEFAULT_EDGES: dict[str, tuple[float, ...]] = {
    "vllm:e2e_request_latency_seconds": REQUEST_LATENCY,
    "vllm:request_queue_time_seconds": REQUEST_LATENCY,
    "vllm:request_inference_time_seconds": REQUEST_LATENCY,
    "vllm:request_prefill_time_seconds": REQUEST_LATENCY,
    "vllm:request_decode_time_seconds": REQUEST_LATENCY,
    "vllm:time_to_first_token_seconds": TIME_TO_FIRST_TOKEN,
    "vllm:inter_token_latency_seconds": INTER_TOKEN_LATENCY,
    "vllm:nixl_xfer_time_seconds": NIXL_POST_TIME[1:],
    "vllm:nixl_post_time_seconds": NIXL_POST_TIME,
    "vllm:nixl_bytes_transferred": NIXL_BYTES,
    "vllm:nixl_num_descriptors": tuple(map(float, NIXL_DESCRIPTORS)),
}

Buckets = Sequence[tuple[float, float]]  # (upper edge "le", cumulative count), sorted by edge


def split_key(key: str) -> tuple[str, dict[str, str]]:
    """`name{a="1",b="2"}` -> ("name", {"a": "1", "b": "2"})."""
    name, _, rest = key.partition("{")
    labels: dict[str, str] = {}
    for part in rest.rstrip("}").split('",'):
        if "=" in part:
            k, _, v = part.partition("=")
            labels[k.strip()] = v.strip().strip('"')
    return name, labels


def counter(deltas: Mapping[str, float], name: str, **labels: str) -> float | None:
    """A counter's delta (summed over label sets matching `labels`); None when no sample has `name`."""
    found = [
        v
        for key, v in deltas.items()
        if (parsed := split_key(key))[0] == name and all(parsed[1].get(k) == w for k, w in labels.items())
    ]
    return sum(found) if found else None


def has_family(deltas: Mapping[str, float], name: str) -> bool:
    """Whether any sample of the metric `name` (with its _bucket/_sum/_count/_total parts) is stored."""
    return any(
        split_key(k)[0] in (name, *(name + s for s in ("_bucket", "_sum", "_count", "_total")))
        for k in deltas
    )


@dataclass(frozen=True)
class Quantile:
    """A quantile from buckets: the interpolated value and the edges of the bucket it fell in."""

    value: float
    lower: float
    upper: float

    def scaled(self, factor: float) -> Quantile:
        return Quantile(self.value * factor, self.lower * factor, self.upper * factor)


def histogram_quantile(q: float, buckets: Buckets) -> Quantile | None:
    """Prometheus' histogram_quantile over cumulative buckets (the last edge must be +Inf).

    None when there is nothing to interpolate (no observations, under two buckets, no +Inf bucket).
    Counts that decrease along the edges are raised to the running maximum, as Prometheus does.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not in [0, 1]")
    edges = sorted(buckets)
    if len(edges) < 2 or not math.isinf(edges[-1][0]):
        return None
    counts, running = [], 0.0
    for _, c in edges:
        running = max(running, c)
        counts.append(running)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(edges) - 1:  # in the +Inf bucket: the highest finite edge is all we know
        edge = edges[-2][0]
        return Quantile(edge, edge, INF)
    upper = edges[b][0]
    if b == 0 and upper <= 0:
        return Quantile(upper, upper, upper)
    lower, below = (edges[b - 1][0], counts[b - 1]) if b > 0 else (0.0, 0.0)
    in_bucket = counts[b] - below
    value = upper if in_bucket <= 0 else lower + (upper - lower) * (rank - below) / in_bucket
    return Quantile(value, lower, upper)


def fill_missing_low_edges(buckets: Buckets, known: Sequence[float]) -> list[tuple[float, float]]:
    """Put back, with a zero count, the known edges below the lowest stored one (a zero delta is not
    stored); only when every stored finite edge is a known one, so the layout is the known layout."""
    edges = sorted(buckets)
    finite = [le for le, _ in edges if not math.isinf(le)]
    if not finite or not set(finite) <= set(known):
        return edges
    return [(le, 0.0) for le in known if le < finite[0]] + edges


@dataclass(frozen=True)
class Histogram:
    """One histogram's deltas over a run (seconds or bytes, as vLLM exports it)."""

    name: str
    buckets: tuple[tuple[float, float], ...]
    count: float
    sum: float

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def quantile(self, q: float) -> Quantile | None:
        return histogram_quantile(q, self.buckets)


def histogram(deltas: Mapping[str, float], name: str, **labels: str) -> Histogram | None:
    """The histogram `name` from stored deltas (label sets matching `labels` merged); None when no sample
    of it is stored (absent from this vLLM, not kept by the runner, or nothing observed)."""
    by_edge: dict[float, float] = {}
    count = total = 0.0
    found = False
    for key, v in deltas.items():
        base, lab = split_key(key)
        if not base.startswith(name) or any(lab.get(k) != w for k, w in labels.items()):
            continue
        part = base[len(name) :]
        if part == "_bucket" and "le" in lab:
            le = INF if lab["le"] in ("+Inf", "Inf", "inf") else float(lab["le"])
            by_edge[le] = by_edge.get(le, 0.0) + v
        elif part == "_count":
            count += v
        elif part == "_sum":
            total += v
        else:
            continue
        found = True
    if not found:
        return None
    if not count and INF in by_edge:
        count = by_edge[INF]
    buckets = fill_missing_low_edges(list(by_edge.items()), DEFAULT_EDGES.get(name, ()))
    return Histogram(name=name, buckets=tuple(buckets), count=count, sum=total)

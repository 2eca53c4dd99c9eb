"""Prometheus metrics of the proxy, in their own registry (served at GET /metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from proxy.instances import InstancePool
from proxy.timing import StageTiming

_LEG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _PoolCollector(Collector):
    """Per-instance gauges read from the pools at scrape time: rotation state, cause when out, load."""

    def __init__(self, pools: Callable[[], list[InstancePool]]) -> None:
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        labels = ["role", "instance"]
        in_rotation = GaugeMetricFamily(
            "proxy_instance_in_rotation", "1 while the instance takes requests, 0 while out", labels=labels
        )
        out = GaugeMetricFamily(
            "proxy_instance_out",
            "1 per instance out of rotation (passive health), labelled with the fault that took it out",
            labels=[*labels, "cause"],
        )
        outstanding = GaugeMetricFamily(
            "proxy_instance_outstanding", "Requests in flight on the instance", labels=labels
        )
        for pool in self.pools():
            for inst in pool.instances():
                key = [pool.role, inst.url]
                in_rotation.add_metric(key, 1.0 if inst.in_rotation else 0.0)
                outstanding.add_metric(key, float(inst.outstanding))
                if not inst.in_rotation:
                    out.add_metric([*key, inst.out_cause or "unknown"], 1.0)
        yield from (in_rotation, out, outstanding)


class ProxyMetrics:
    """Stage latency histograms, in-flight gauge, request, error, retry and ejection counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.prefill = Histogram(
            "proxy_prefill_leg_seconds", "Prefill leg round trip", buckets=_LEG_BUCKETS, registry=r
        )
        self.decode_first_chunk = Histogram(
            "proxy_decode_first_chunk_seconds",
            "Decode request sent -> first chunk back",
            buckets=_LEG_BUCKETS,
            registry=r,
        )
        self.decode_total = Histogram(
            "proxy_decode_total_seconds",
            "Decode request sent -> decode end",
            buckets=_LEG_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "proxy_overhead_seconds",
            "Time in the proxy before the decode request, excluding the prefill leg",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("proxy_requests_in_flight", "Requests being handled", registry=r)
        self.requests = Counter("proxy_requests", "Requests received, by endpoint", ["endpoint"], registry=r)
        self.paths = Counter(
            "proxy_requests_by_path",
            "Requests routed, by the path the policy chose (split: P then D; local: D alone)",
            ["path"],
            registry=r,
        )
        for path in ("split", "local"):
            self.paths.labels(path)
        self.errors = Counter(
            "proxy_errors", "Failed requests, by leg (request, prefill, decode, client)", ["leg"], registry=r
        )
        for leg in ("request", "prefill", "decode", "client"):
            self.errors.labels(leg)
        self.retries = Counter(
            "proxy_retries", "Legs sent again to another instance, by leg", ["leg"], registry=r
        )
        for leg in ("prefill", "decode"):
            self.retries.labels(leg)
        self.ejections = Counter(
            "proxy_instance_ejections",
            "Times an instance was taken out of rotation, by fault",
            ["role", "instance", "cause"],
            registry=r,
        )

    def watch_pools(self, pools: Callable[[], list[InstancePool]]) -> None:
        """Export the per-instance gauges of these pools."""
        self.registry.register(_PoolCollector(pools))

    def observe(self, timing: StageTiming) -> None:
        """Record the stage durations that the request reached, and its path."""
        if timing.path is not None:
            self.paths.labels(timing.path).inc()
        if timing.prefill_start is not None and timing.prefill_end is not None:
            self.prefill.observe((timing.prefill_end - timing.prefill_start) / 1e9)
        if timing.decode_send is not None:
            if timing.decode_first_chunk is not None:
                self.decode_first_chunk.observe((timing.decode_first_chunk - timing.decode_send) / 1e9)
            if timing.decode_end is not None:
                self.decode_total.observe((timing.decode_end - timing.decode_send) / 1e9)
            overhead = timing.proxy_overhead_ms
            if overhead is not None:
                self.overhead.observe(overhead / 1e3)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Scrape vLLM's Prometheus /metrics before and after a run and keep the deltas that matter."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# Counters and histogram parts worth keeping (deltas over the run).
KEEP_PREFIXES = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:prompt_tokens_by_source",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:external_prefix_cache",
    "vllm:prefix_cache",
    "vllm:request_success",
    "vllm:num_preemptions",
    "vllm:request_inference_time_seconds",
    "vllm:iteration_tokens_total",  # tokens per engine step: batching, seen directly
    "vllm:nixl_",  # NIXL transfer time, bytes, post time, failures (vLLM >= 0.24)
)


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """`name{labels}` -> value for the kept vLLM samples of one server's /metrics."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.startswith(KEEP_PREFIXES) or s.name.endswith("_created"):
                continue
            labels = ",".join(
                f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k not in ("engine", "model_name")
            )
            out[f"{s.name}{{{labels}}}"] = float(s.value)
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) != 0.0}


def histogram_quantile(deltas: dict[str, float], name: str, q: float) -> float | None:
    """Prometheus-style quantile (linear within a bucket) of a histogram from its bucket deltas."""
    buckets = []
    for key, val in deltas.items():
        if key.startswith(name + "_bucket{") and 'le="' in key:
            le = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), val))
    if not buckets:
        return None
    buckets.sort()
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_le, prev_count = le, count
    return prev_le


def snapshot_all(urls: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for url in urls:
        try:
            out[url] = scrape(url)
        except OSError as exc:
            out[url] = {"error": str(exc)}
    return out

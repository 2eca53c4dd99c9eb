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
        return parse(resp.read().decode())


def parse(text: str) -> dict[str, float]:
    """A /metrics exposition as the runner stores it: the kept samples (KEEP_PREFIXES, no `_created`),
    keyed `name{labels sorted}` without the engine and model-name labels."""
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
    """What changed between two scrapes; unchanged samples are left out."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) != 0.0}


def snapshot_all(urls: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for url in urls:
        try:
            out[url] = scrape(url)
        except OSError as exc:
            out[url] = {"error": str(exc)}
    return out

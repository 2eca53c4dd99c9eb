"""A run as `vllm bench serve --save-result` writes it, so that plots and notebooks made for vLLM's files
read ours (`run_experiment.py --save-result`).

Keys and units are vLLM's (vllm/benchmarks/serve.py, `main_async` and `benchmark`): the run's setup
(date, backend, model_id, tokenizer_id, num_prompts, request_rate, burstiness, max_concurrency), counts,
throughputs per second, and latency statistics in ms: mean/median/std and p50/p90/p95/p99 of ttft, tpot,
itl and e2el (what `--percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,90,95,99` gives).
With `detailed` (vLLM's --save-detailed) come the per-request lists, in vLLM's units: ttfts, itls,
latencies, start_times and queue_times in seconds. Requests are the measured ones in schedule order; a
failed or cancelled one has vLLM's empty values (ttft 0.0, itl [], latency 0.0, output length 0) and its
error; `failed` counts both. Our records keep no generated text: generated_texts holds empty strings.
The numbers are our summary's (experiments.metrics, with vLLM's definitions); an empty statistic is 0.0,
as vLLM writes it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from experiments.schema import Record, RunResult, Summary

NS_PER_S = 1e9
METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50, 90, 95, 99)
# Per-request lists, written only with `detailed` (vLLM drops them without --save-detailed).
DETAILED_KEYS = (
    "input_lens",
    "output_lens",
    "ttfts",
    "itls",
    "latencies",
    "start_times",
    "queue_times",
    "generated_texts",
    "errors",
)


def _backend(result: RunResult) -> str:
    return "openai-chat" if result.metadata.config.api == "chat" else "openai"


def _rate(result: RunResult) -> float | str:
    rate = result.metadata.config.offered_rate
    return "inf" if rate is None or math.isinf(rate) else rate


def _model_id(result: RunResult) -> str | None:
    """What vLLM calls the model id: the served model's root (its path) as /v1/models reports it."""
    meta = result.metadata
    entry = next((m for m in meta.served_models if m.get("id") == meta.model), None)
    return str(entry.get("root") or meta.model) if entry else meta.model


def _stats(summary: Summary) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in METRICS:
        dist = summary.distribution(f"{name}_ms")
        out[f"mean_{name}_ms"] = dist.mean or 0.0
        out[f"median_{name}_ms"] = dist.median or 0.0
        out[f"std_{name}_ms"] = dist.std or 0.0
        for p in PERCENTILES:
            out[f"p{p}_{name}_ms"] = dist.stat(f"p{p}") or 0.0
    return out


def _peaks(good: list[Record]) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s (text chunks per whole second since the first send) and
    max_concurrent_requests (a sweep over [send, send + latency) of the successful requests)."""
    if not good:
        return 0.0, 0
    start = min(r.sent_mono_ns for r in good if r.sent_mono_ns is not None)
    ends = [r.sent_mono_ns + (r.e2el_ms or 0.0) * 1e6 for r in good if r.sent_mono_ns is not None]
    seconds = int(np.ceil((max(ends) - start) / NS_PER_S)) + 1
    chunks = np.concatenate([np.asarray(r.chunk_mono_ns, dtype=np.int64) for r in good]) - start
    per_second = np.bincount((chunks // 1_000_000_000).astype(np.int64), minlength=seconds)
    events = sorted([(r.sent_mono_ns, 1) for r in good] + [(e, -1) for e in ends])  # ends before starts
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return float(per_second.max()), peak


def _detailed(records: list[Record]) -> dict[str, list[Any]]:
    def seconds(ms: float | None) -> float:
        return (ms or 0.0) / 1e3

    return {
        "input_lens": [r.input_tokens_expected or r.prompt_tokens or 0 for r in records],
        "output_lens": [r.output_tokens or 0 for r in records],
        "ttfts": [seconds(r.ttft_ms) for r in records],
        "itls": [[seconds(g) for g in r.itl_ms] for r in records],
        "latencies": [seconds(r.e2el_ms) for r in records],
        "start_times": [(r.sent_mono_ns or 0) / NS_PER_S for r in records],
        "queue_times": [seconds(r.send_lateness_ms) for r in records],
        "generated_texts": ["" for _ in records],
        "errors": [r.failure or "" for r in records],
    }


def vllm_bench_result(result: RunResult, detailed: bool = False) -> dict[str, Any]:
    """The run as `vllm bench serve --save-result` (with `detailed`: `--save-detailed`) writes it."""
    summary = result.summary
    if summary is None:
        raise ValueError(f"{result.path}: the run has no summary to write in vLLM's shape")
    meta, cfg = result.metadata, result.metadata.config
    records = sorted(result.measured(), key=lambda r: (r.scheduled_mono_ns or r.sent_mono_ns or 0, r.index))
    peak_tokens, peak_requests = _peaks([r for r in records if r.succeeded])
    closed = cfg.arrival.kind == "closed"
    out: dict[str, Any] = {
        "date": time.strftime("%Y%m%d-%H%M%S", time.localtime(meta.start_epoch_ns / NS_PER_S)),
        "endpoint_type": _backend(result),
        "backend": _backend(result),
        "label": cfg.tag or None,
        "model_id": _model_id(result),
        "tokenizer_id": meta.tokenizer,
        "num_prompts": summary.measured,
        "request_rate": _rate(result),
        "burstiness": cfg.arrival.burstiness,
        "max_concurrency": cfg.arrival.concurrency if closed else cfg.arrival.max_concurrency,
        "duration": summary.duration_s or 0.0,
        "completed": summary.completed,
        "failed": summary.failed + summary.cancelled,
        "total_input_tokens": summary.total_input_tokens,
        "total_output_tokens": summary.total_output_tokens,
        "request_throughput": summary.request_throughput or 0.0,
        "request_goodput": summary.goodput if summary.slo else None,
        "output_throughput": summary.output_throughput or 0.0,
        "total_token_throughput": summary.total_token_throughput or 0.0,
        **(_detailed(records) if detailed else {}),
        "max_output_tokens_per_s": peak_tokens,
        "max_concurrent_requests": peak_requests,
        "rtfx": 0.0,
        **_stats(summary),
    }
    return out


def default_file_name(result: RunResult) -> str:
    """vLLM's name: {label}-{request_rate}qps[-concurrency{N}]-{model basename}-{date}.json."""
    doc = vllm_bench_result(result)
    rate = doc["request_rate"]
    rate_text = "inf" if rate == "inf" else str(float(rate))
    cap = f"-concurrency{doc['max_concurrency']}" if doc["max_concurrency"] is not None else ""
    model = str(doc["model_id"] or "model").rstrip("/").split("/")[-1]
    return f"{doc['label'] or doc['backend']}-{rate_text}qps{cap}-{model}-{doc['date']}.json"


def save_vllm_result(result: RunResult, path: str | Path, detailed: bool = False) -> Path:
    """Write `vllm_bench_result` to `path` (directories made as needed); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(vllm_bench_result(result, detailed)))
    return out

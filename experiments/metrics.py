"""Latency, throughput and goodput from per-request records, with vLLM's `calculate_metrics` definitions.

A record is a dict written by the streaming client (monotonic ns timestamps): index, warmup, ok,
sent_mono_ns, first_token_mono_ns, end_mono_ns, chunk_mono_ns (arrival of every chunk with output text),
prompt_tokens, completion_tokens (from usage), scheduled_mono_ns, error.

Definitions (vLLM `benchmarks/serve.py`): TTFT = first token - sent; E2EL = last text chunk - sent;
ITL = every gap between consecutive chunks, pooled over requests; TPOT = (E2EL - TTFT) /
(output tokens - 1) for requests with more than one output token; goodput = requests/s meeting every
given SLO, where a request with one output token has no TPOT and passes the TPOT SLO. Distributions use
np.std (population) and np.percentile (linear).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

import numpy as np

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
DISTRIBUTIONS: tuple[str, ...] = (
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "itl_req_avg_ms",
    "tbt_max_ms",
    "e2el_ms",
    "send_lateness_ms",
)
_SLO_METRIC = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "e2el_ms", "e2el": "e2el_ms"}
_NO_TOKEN_ERROR = "no output token received"
_NO_TIME_ERROR = "record lacks sent_mono_ns or end_mono_ns"


def distribution(values: Iterable[float]) -> dict[str, float | int | None]:
    """{mean, median, std, min, max, p50, p90, p95, p99, count}; all None with count 0 when empty."""
    arr = np.asarray(list(values), dtype=float)
    keys = ["mean", "median", "std", "min", "max", *(f"p{p}" for p in PERCENTILES)]
    if arr.size == 0:
        return {**dict.fromkeys(keys), "count": 0}
    stats = [np.mean(arr), np.median(arr), np.std(arr), np.min(arr), np.max(arr)]
    stats += list(np.percentile(arr, PERCENTILES))
    return {**{k: float(v) for k, v in zip(keys, stats, strict=True)}, "count": int(arr.size)}


def _ms(later_ns: int | None, earlier_ns: int | None) -> float | None:
    if later_ns is None or earlier_ns is None:
        return None
    return (later_ns - earlier_ns) / NS_PER_MS


def per_request_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics of one record (times in ms).

    Keys: index, ok (finished and streamed at least one token), ttft_ms, e2el_ms, tpot_ms (None with
    fewer than 2 output tokens), itl_ms (list of chunk gaps), itl_req_avg_ms and tbt_max_ms (mean and
    max gap, None with fewer than 2 chunks), input_tokens (usage, else input_tokens_expected),
    output_tokens (usage, else the number of chunks), send_lateness_ms (sent - scheduled, None when not
    scheduled), error. Latency fields are None for a failed request.
    """
    first = record.get("first_token_mono_ns")
    sent, end = record.get("sent_mono_ns"), record.get("end_mono_ns")
    ok = bool(record.get("ok")) and first is not None and sent is not None and end is not None
    error = record.get("error")
    if record.get("ok") and not ok:  # vLLM counts a stream without any token as failed
        error = error or (_NO_TOKEN_ERROR if first is None else _NO_TIME_ERROR)
    out: dict[str, Any] = {
        "index": record.get("index"),
        "ok": ok,
        "ttft_ms": None,
        "e2el_ms": None,
        "tpot_ms": None,
        "itl_ms": [],
        "itl_req_avg_ms": None,
        "tbt_max_ms": None,
        "input_tokens": None,
        "output_tokens": None,
        "send_lateness_ms": _ms(record.get("sent_mono_ns"), record.get("scheduled_mono_ns")),
        "error": None if ok else (error or "unknown error"),
    }
    if not ok:
        return out
    chunks = [int(t) for t in record.get("chunk_mono_ns") or []]
    ttft = (first - sent) / NS_PER_MS
    # vLLM's E2E latency ends at the last chunk that carried text (not at [DONE] / the usage chunk).
    e2el = ((chunks[-1] if chunks else end) - sent) / NS_PER_MS
    itl = [(b - a) / NS_PER_MS for a, b in pairwise(chunks)]
    n_out = record.get("completion_tokens")
    if n_out is None:
        n_out = max(len(chunks), 1)
    n_in = record.get("prompt_tokens")
    if n_in is None:  # no usage: the workload's expected count (vLLM falls back the same way)
        n_in = record.get("input_tokens_expected", record.get("input_tokens"))
    out.update(
        ttft_ms=ttft,
        e2el_ms=e2el,
        tpot_ms=(e2el - ttft) / (n_out - 1) if n_out > 1 else None,
        itl_ms=itl,
        itl_req_avg_ms=float(np.mean(itl)) if itl else None,
        tbt_max_ms=max(itl) if itl else None,
        input_tokens=n_in,
        output_tokens=int(n_out),
    )
    return out


def _check_slo(slo: Mapping[str, float]) -> None:
    for key, value in slo.items():
        if key not in _SLO_METRIC:
            raise ValueError(f"unknown SLO {key!r}; use ttft, tpot or e2e (milliseconds)")
        if not value > 0:
            raise ValueError(f"SLO {key} must be a positive number of milliseconds, got {value!r}")


def meets_slo(metrics: Mapping[str, Any], slo: Mapping[str, float]) -> bool:
    """Whether one successful request (from `per_request_metrics`) meets every SLO in `slo` (ms).

    A request without a TPOT (one output token) passes the TPOT SLO, as in vLLM.
    """
    if not metrics["ok"]:
        return False
    for key, limit in slo.items():
        value = metrics[_SLO_METRIC[key]]
        if value is None and key == "tpot":
            value = 0.0
        if value is None or value > limit:
            return False
    return True


def _per_second(count: float, duration_s: float | None) -> float | None:
    return count / duration_s if duration_s else None


def compute_summary(
    records: Iterable[Mapping[str, Any]], slo: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Summary of a run: counts, tokens, throughputs (per s), goodput and latency distributions (ms).

    Warm-up records are excluded. `duration_s` spans the first send to the last end over all measured
    records (failed included). Throughputs and goodput are None when the duration is unknown or 0;
    goodput is None without an SLO. `slo` uses the keys of `parse_slo` (ms).
    """
    slo = dict(slo or {})
    _check_slo(slo)
    records = list(records)
    measured = [r for r in records if not r.get("warmup")]
    per = [per_request_metrics(r) for r in measured]
    good = [m for m in per if m["ok"]]

    sends = [r["sent_mono_ns"] for r in measured if r.get("sent_mono_ns") is not None]
    ends = [r["end_mono_ns"] for r in measured if r.get("end_mono_ns") is not None]
    duration_s = (max(ends) - min(sends)) / NS_PER_S if sends and ends else None
    if duration_s is not None and duration_s <= 0:
        duration_s = None

    total_in = sum(m["input_tokens"] or 0 for m in good)
    total_out = sum(m["output_tokens"] for m in good)
    good_requests = sum(meets_slo(m, slo) for m in good) if slo else None

    summary: dict[str, Any] = {
        "measured": len(measured),
        "warmup_excluded": len(records) - len(measured),
        "completed": len(good),
        "failed": len(per) - len(good),
        "duration_s": duration_s,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": _per_second(len(good), duration_s),
        "output_throughput": _per_second(total_out, duration_s),
        "total_token_throughput": _per_second(total_in + total_out, duration_s),
        "goodput": _per_second(good_requests, duration_s) if good_requests is not None else None,
        "good_requests": good_requests,
        "slo": slo or None,
        "errors": dict(Counter(str(m["error"])[:200] for m in per if not m["ok"])),
    }
    summary["ttft_ms"] = distribution(m["ttft_ms"] for m in good)
    summary["tpot_ms"] = distribution(m["tpot_ms"] for m in good if m["tpot_ms"] is not None)
    summary["itl_ms"] = distribution(x for m in good for x in m["itl_ms"])
    summary["itl_req_avg_ms"] = distribution(
        m["itl_req_avg_ms"] for m in good if m["itl_req_avg_ms"] is not None
    )
    summary["tbt_max_ms"] = distribution(m["tbt_max_ms"] for m in good if m["tbt_max_ms"] is not None)
    summary["e2el_ms"] = distribution(m["e2el_ms"] for m in good)
    summary["send_lateness_ms"] = distribution(
        m["send_lateness_ms"] for m in per if m["send_lateness_ms"] is not None
    )
    return summary

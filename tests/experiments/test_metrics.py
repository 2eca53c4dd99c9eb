"""Metrics on hand-built request timelines whose values are worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from experiments.metrics import compute_summary, distribution, meets_slo, per_request_metrics
from experiments.slo import parse_slo

BASE_NS = 7_000_000_000_000  # an arbitrary monotonic origin


def ms(x: float) -> int:
    return BASE_NS + int(x * 1_000_000)


def record(
    index: int,
    sent: float,
    chunks: list[float],
    end: float,
    completion: int | None,
    prompt: int | None,
    scheduled: float | None = None,
    ok: bool = True,
    warmup: bool = False,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "warmup": warmup,
        "ok": ok,
        "sent_mono_ns": ms(sent),
        "first_token_mono_ns": ms(chunks[0]) if chunks else None,
        "end_mono_ns": ms(end),
        "chunk_mono_ns": [ms(c) for c in chunks],
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "scheduled_mono_ns": None if scheduled is None else ms(scheduled),
        "error": error,
    }


# E2EL ends at the last text chunk, as in vLLM (the stream's end after [DONE]/usage comes later).
# A: TTFT 100, chunks every 20/30/10 ms, E2EL 160, 4 tokens -> TPOT (160-100)/3 = 20, lateness 2.
# B: TTFT 200, one gap of 40, E2EL 240, 3 tokens in 2 chunks -> TPOT (240-200)/2 = 20, lateness 0.
# C: TTFT 30, a single token, E2EL 30 -> no TPOT, no ITL, lateness 5.
# D: failed; its end (500 ms) is the last end, so the measured duration is 0.5 s.
# W: warm-up; would stretch the duration and add lateness 100 if it were counted.
RECORDS = [
    record(0, 0, [100, 120, 150, 160], 190, completion=4, prompt=10, scheduled=-2),
    record(1, 50, [250, 290], 300, completion=3, prompt=20, scheduled=50),
    record(2, 60, [90], 100, completion=1, prompt=5, scheduled=55),
    record(3, 70, [], 500, completion=None, prompt=None, scheduled=70, ok=False, error="HTTP 500: boom"),
    record(99, -1000, [-900, -800], 5000, completion=2, prompt=7, scheduled=-1100, warmup=True),
]


def test_per_request_metrics_of_one_timeline() -> None:
    m = per_request_metrics(RECORDS[0])
    assert m["ok"] is True
    assert m["ttft_ms"] == 100.0
    assert m["e2el_ms"] == 160.0
    assert m["tpot_ms"] == 20.0
    assert m["itl_ms"] == [20.0, 30.0, 10.0]
    assert m["itl_req_avg_ms"] == 20.0
    assert m["tbt_max_ms"] == 30.0
    assert (m["input_tokens"], m["output_tokens"]) == (10, 4)
    assert m["send_lateness_ms"] == 2.0
    assert m["error"] is None


def test_single_token_request_has_no_tpot_and_no_itl() -> None:
    m = per_request_metrics(RECORDS[2])
    assert (m["ttft_ms"], m["e2el_ms"], m["tpot_ms"]) == (30.0, 30.0, None)
    assert (m["itl_ms"], m["itl_req_avg_ms"], m["tbt_max_ms"]) == ([], None, None)


def test_failed_request_has_no_latencies_but_keeps_lateness() -> None:
    m = per_request_metrics(RECORDS[3])
    assert m["ok"] is False
    assert m["ttft_ms"] is None and m["e2el_ms"] is None and m["tpot_ms"] is None
    assert m["error"] == "HTTP 500: boom"
    assert m["send_lateness_ms"] == 0.0


def test_summary_counts_tokens_and_throughput() -> None:
    s = compute_summary(RECORDS)
    assert (s["measured"], s["warmup_excluded"], s["completed"], s["failed"]) == (4, 1, 3, 1)
    assert s["duration_s"] == 0.5
    assert s["total_input_tokens"] == 35
    assert s["total_output_tokens"] == 8
    assert s["request_throughput"] == 6.0
    assert s["output_throughput"] == 16.0
    assert s["total_token_throughput"] == 86.0
    assert s["goodput"] is None and s["good_requests"] is None and s["slo"] is None
    assert s["errors"] == {"HTTP 500: boom": 1}


def test_summary_distributions() -> None:
    s = compute_summary(RECORDS)
    ttft = s["ttft_ms"]
    assert ttft["count"] == 3
    assert (ttft["mean"], ttft["median"], ttft["min"], ttft["max"], ttft["p50"]) == (
        110.0,
        100.0,
        30.0,
        200.0,
        100.0,
    )
    assert ttft["std"] == pytest.approx(math.sqrt((10**2 + 90**2 + 80**2) / 3))  # population std
    # linear percentiles of [30, 100, 200]: p90 at rank 1.8, p95 at 1.9, p99 at 1.98
    assert (ttft["p90"], ttft["p95"], ttft["p99"]) == pytest.approx((180.0, 190.0, 198.0))

    tpot = s["tpot_ms"]
    assert (tpot["count"], tpot["mean"], tpot["std"], tpot["min"], tpot["max"]) == (2, 20.0, 0.0, 20.0, 20.0)

    itl = s["itl_ms"]  # pooled gaps [20, 30, 10, 40]
    assert (itl["count"], itl["mean"], itl["median"], itl["min"], itl["max"]) == (4, 25.0, 25.0, 10.0, 40.0)
    assert itl["std"] == pytest.approx(math.sqrt(125.0))
    assert itl["p90"] == pytest.approx(37.0)

    assert (s["itl_req_avg_ms"]["count"], s["itl_req_avg_ms"]["mean"]) == (2, 30.0)
    assert (s["tbt_max_ms"]["min"], s["tbt_max_ms"]["max"]) == (30.0, 40.0)

    e2el = s["e2el_ms"]
    assert (e2el["count"], e2el["min"], e2el["max"], e2el["median"]) == (3, 30.0, 240.0, 160.0)

    late = s["send_lateness_ms"]  # includes the failed request, excludes the warm-up
    assert (late["count"], late["mean"], late["max"], late["min"]) == (4, 1.75, 5.0, 0.0)


@pytest.mark.parametrize(
    ("slo_text", "good"),
    [
        ("ttft=150,tpot=19,e2e=300", 1),  # A fails tpot 20, B fails ttft 200, C passes (no tpot)
        ("ttft=200", 3),  # the limit itself passes
        ("ttft=199.9", 2),
        ("tpot=19.9", 1),  # A and B fail; C has one token and passes the tpot SLO
        ("e2e=200", 2),
        ("e2el=200", 2),
        ("e2e=29.9", 0),
    ],
)
def test_goodput(slo_text: str, good: int) -> None:
    s = compute_summary(RECORDS, parse_slo(slo_text))
    assert s["good_requests"] == good
    assert s["goodput"] == good / 0.5
    assert s["slo"] == parse_slo(slo_text)


def test_meets_slo_rejects_failed_requests() -> None:
    assert meets_slo(per_request_metrics(RECORDS[3]), {"ttft": 1e9}) is False
    assert meets_slo(per_request_metrics(RECORDS[2]), {"ttft": 30, "tpot": 1, "e2e": 30}) is True


def test_unknown_slo_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown SLO 'ttfb'"):
        compute_summary(RECORDS, {"ttfb": 100.0})


def test_empty_input() -> None:
    s = compute_summary([])
    assert (s["measured"], s["completed"], s["failed"], s["total_output_tokens"]) == (0, 0, 0, 0)
    assert s["duration_s"] is None and s["request_throughput"] is None and s["output_throughput"] is None
    for key in (
        "ttft_ms",
        "tpot_ms",
        "itl_ms",
        "itl_req_avg_ms",
        "tbt_max_ms",
        "e2el_ms",
        "send_lateness_ms",
    ):
        assert s[key]["count"] == 0
        assert s[key]["mean"] is None and s[key]["p99"] is None and s[key]["std"] is None


def test_only_warmups_is_like_empty() -> None:
    s = compute_summary([RECORDS[4]], {"ttft": 100})
    assert (s["measured"], s["warmup_excluded"], s["completed"]) == (0, 1, 0)
    assert s["goodput"] is None and s["good_requests"] == 0


def test_all_failed() -> None:
    s = compute_summary([RECORDS[3]], {"ttft": 100})
    assert (s["completed"], s["failed"]) == (0, 1)
    assert s["duration_s"] == pytest.approx(0.43)
    assert s["request_throughput"] == 0.0 and s["goodput"] == 0.0
    assert s["ttft_ms"]["count"] == 0


def test_ok_stream_without_tokens_counts_as_failed() -> None:
    rec = record(5, 0, [], 50, completion=0, prompt=3)
    s = compute_summary([rec])
    assert (s["completed"], s["failed"]) == (0, 1)
    assert s["errors"] == {"no output token received": 1}


def test_token_count_fallbacks_without_usage() -> None:
    rec = record(6, 0, [10, 20, 40], 40, completion=None, prompt=None)
    rec["input_tokens_expected"] = 12
    m = per_request_metrics(rec)
    assert (m["input_tokens"], m["output_tokens"]) == (12, 3)  # chunks counted as tokens
    assert m["tpot_ms"] == 15.0


def test_summary_accepts_a_generator() -> None:
    s = compute_summary(r for r in RECORDS)
    assert (s["completed"], s["warmup_excluded"]) == (3, 1)


def test_distribution_of_one_value() -> None:
    d = distribution([4.0])
    assert d == {
        "mean": 4.0,
        "median": 4.0,
        "std": 0.0,
        "min": 4.0,
        "max": 4.0,
        "p50": 4.0,
        "p90": 4.0,
        "p95": 4.0,
        "p99": 4.0,
        "count": 1,
    }

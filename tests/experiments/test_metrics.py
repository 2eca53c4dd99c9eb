"""Run-level metrics (Summary, goodput, the proxy's stage split) on hand-built timelines
(tests/experiments/timelines.py says what each request is)."""

from __future__ import annotations

import math

import pytest

from experiments.metrics import compute_summary, meets_slo, stage_summary, successes
from experiments.schema import Distribution, StageTimes
from experiments.schema.records import CANCELLED
from experiments.slo import parse_slo
from tests.experiments.timelines import ms, record, records

RECORDS = records()


def test_summary_counts_tokens_and_throughput() -> None:
    s = compute_summary(RECORDS)
    assert (s.measured, s.warmup_excluded, s.completed, s.failed) == (4, 1, 3, 1)
    assert s.duration_s == 0.5
    assert s.total_input_tokens == 35
    assert s.total_output_tokens == 8
    assert s.request_throughput == 6.0
    assert s.output_throughput == 16.0
    assert s.total_token_throughput == 86.0
    assert s.goodput is None and s.good_requests is None and s.slo is None
    assert s.errors == {"HTTP 500: boom": 1}


def test_completed_counts_exactly_the_successes() -> None:
    s = compute_summary(RECORDS)
    assert s.completed == len(successes(RECORDS)) == 3


def test_summary_distributions() -> None:
    s = compute_summary(RECORDS)
    ttft = s.ttft_ms
    assert ttft.count == 3
    assert (ttft.mean, ttft.median, ttft.min, ttft.max, ttft.p50) == (110.0, 100.0, 30.0, 200.0, 100.0)
    assert ttft.std == pytest.approx(math.sqrt((10**2 + 90**2 + 80**2) / 3))  # population std
    # linear percentiles of [30, 100, 200]: p90 at rank 1.8, p95 at 1.9, p99 at 1.98
    assert (ttft.p90, ttft.p95, ttft.p99) == pytest.approx((180.0, 190.0, 198.0))

    tpot = s.tpot_ms
    assert (tpot.count, tpot.mean, tpot.std, tpot.min, tpot.max) == (2, 20.0, 0.0, 20.0, 20.0)

    itl = s.itl_ms  # pooled gaps [20, 30, 10, 40]
    assert (itl.count, itl.mean, itl.median, itl.min, itl.max) == (4, 25.0, 25.0, 10.0, 40.0)
    assert itl.std == pytest.approx(math.sqrt(125.0))
    assert itl.p90 == pytest.approx(37.0)

    assert (s.itl_req_avg_ms.count, s.itl_req_avg_ms.mean) == (2, 30.0)
    assert (s.tbt_max_ms.min, s.tbt_max_ms.max) == (30.0, 40.0)

    e2el = s.e2el_ms
    assert (e2el.count, e2el.min, e2el.max, e2el.median) == (3, 30.0, 240.0, 160.0)

    late = s.send_lateness_ms  # includes the failed request, excludes the warm-up
    assert (late.count, late.mean, late.max, late.min) == (4, 1.75, 5.0, 0.0)


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
    assert s.good_requests == good
    assert s.goodput == good / 0.5
    assert s.slo == parse_slo(slo_text)


def test_meets_slo_rejects_failed_requests() -> None:
    assert meets_slo(RECORDS[3], {"ttft": 1e9}) is False
    assert meets_slo(RECORDS[2], {"ttft": 30, "tpot": 1, "e2e": 30}) is True


def test_unknown_slo_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown SLO 'ttfb'"):
        compute_summary(RECORDS, {"ttfb": 100.0})


def test_empty_input() -> None:
    s = compute_summary([])
    assert (s.measured, s.completed, s.failed, s.total_output_tokens) == (0, 0, 0, 0)
    assert s.duration_s is None and s.request_throughput is None and s.output_throughput is None
    for key in (
        "ttft_ms",
        "tpot_ms",
        "itl_ms",
        "itl_req_avg_ms",
        "tbt_max_ms",
        "e2el_ms",
        "send_lateness_ms",
    ):
        d = s.distribution(key)
        assert d.count == 0 and d.mean is None and d.p99 is None and d.std is None


def test_only_warmups_is_like_empty() -> None:
    s = compute_summary([RECORDS[4]], {"ttft": 100})
    assert (s.measured, s.warmup_excluded, s.completed) == (0, 1, 0)
    assert s.goodput is None and s.good_requests == 0


def test_all_failed() -> None:
    s = compute_summary([RECORDS[3]], {"ttft": 100})
    assert (s.completed, s.failed) == (0, 1)
    assert s.duration_s == pytest.approx(0.43)
    assert s.request_throughput == 0.0 and s.goodput == 0.0
    assert s.ttft_ms.count == 0


def test_ok_stream_without_tokens_counts_as_failed() -> None:
    s = compute_summary([record(5, 0, [], 50, completion=0, prompt=3)])
    assert (s.completed, s.failed) == (0, 1)
    assert s.errors == {"no output token received": 1}


def test_summary_accepts_a_generator() -> None:
    s = compute_summary(r for r in RECORDS)
    assert (s.completed, s.warmup_excluded) == (3, 1)


def test_distribution_of_one_value() -> None:
    d = Distribution.of([4.0])
    assert d == Distribution(
        mean=4.0, median=4.0, std=0.0, min=4.0, max=4.0, p50=4.0, p90=4.0, p95=4.0, p99=4.0, count=1
    )


def test_stage_split_accounts_for_the_whole_ttft() -> None:
    rec = record(0, 0, [100, 110], 120, completion=2, prompt=3)
    rec.stages = StageTimes(
        prefill_ms=60.0, decode_first_chunk_ms=30.0, decode_total_ms=500.0, proxy_overhead_ms=2.0
    )
    warm = record(-1, 0, [100, 110], 120, completion=2, prompt=3, warmup=True)
    warm.stages = rec.stages
    s = stage_summary([rec, warm])
    assert s is not None and s.count == 1
    assert s.prefill_ms.p50 == 60.0
    assert s.client_side_ms.p50 == 8.0  # 100 - 60 - 30 - 2
    assert stage_summary([record(0, 0, [100], 120, completion=1, prompt=3)]) is None


def test_cancelled_requests_are_counted_apart_from_failures() -> None:
    recs = records()
    cut = record(4, 80, [180, 200], 600, None, None, scheduled=80, ok=False, error=CANCELLED)
    cut.cancelled = True
    s = compute_summary([*recs, cut])
    assert (s.measured, s.completed, s.failed, s.cancelled) == (5, 3, 1, 1)
    assert s.errors == {"HTTP 500: boom": 1}  # the server's failures only
    assert s.duration_s == 0.6  # it was in flight until the interruption
    assert s.ttft_ms.count == 3 and s.send_lateness_ms.count == 5


def test_chunks_read_together_are_counted_as_coalesced() -> None:
    recs = records()
    recs[0].chunk_mono_ns = [ms(100), ms(120), ms(120), ms(160)]  # two chunks in one read
    recs[1].chunk_mono_ns = [ms(250), ms(250)]
    s = compute_summary(recs)
    assert (s.chunks, s.coalesced_chunks) == (7, 2)  # A 4, B 2, C 1; the warm-up's are not counted
    assert s.coalesced_chunk_share == pytest.approx(2 / 7)
    assert s.itl_ms.min == 0.0


def test_no_chunks_no_coalesced_share() -> None:
    s = compute_summary([records()[3]])
    assert (s.chunks, s.coalesced_chunks, s.coalesced_chunk_share) == (0, 0, None)


def test_stage_summary_counts_and_times_each_path() -> None:
    """Two split requests (TTFT 100 and 300 ms), one local (TTFT 40 ms), one failed split, one warm-up
    local: per path, the measured successes only."""
    split_a = record(0, 0, [100, 110, 120], 130, completion=3, prompt=2000)
    split_b = record(1, 0, [300, 320, 340], 350, completion=3, prompt=3000)
    local = record(2, 0, [40, 45], 50, completion=2, prompt=100)
    failed = record(3, 0, [], 60, completion=None, prompt=None, ok=False, error="HTTP 502")
    warm = record(-1, 0, [10, 20], 30, completion=2, prompt=100, warmup=True)
    for r, path in (
        (split_a, "split"),
        (split_b, "split"),
        (local, "local"),
        (failed, "split"),
        (warm, "local"),
    ):
        r.stages = StageTimes(policy="threshold:1024", path=path, prefill_ms=1.0)
    s = stage_summary([split_a, split_b, local, failed, warm])
    assert s is not None and list(s.paths) == ["local", "split"]
    split, loc = s.paths["split"], s.paths["local"]
    assert (split.count, loc.count) == (2, 1)
    assert (split.ttft_ms.mean, split.ttft_ms.max, loc.ttft_ms.p50) == (200.0, 300.0, 40.0)
    assert split.tpot_ms.mean == (10.0 + 20.0) / 2  # (last chunk - first) / 2: (120 - 100), (340 - 300)
    assert (split.input_tokens.mean, loc.input_tokens.mean) == (2500.0, 100.0)
    unrouted = record(0, 0, [100], 120, completion=1, prompt=3)
    unrouted.stages = StageTimes(prefill_ms=1.0)  # a proxy without policies: no path, no group
    summary = stage_summary([unrouted])
    assert summary is not None and summary.paths == {}


def test_proxy_retried_counts_the_measured_requests_whose_stage_record_says_so() -> None:
    rows = records()  # A, B, C, D (failed) measured; W warm-up
    rows[0].stages = StageTimes(retries=1)  # A: the proxy sent a leg again
    rows[1].stages = StageTimes(retries=0)
    rows[2].retries = 1  # C: the client sent it again (not the proxy)
    rows[4].stages = StageTimes(retries=1)  # the warm-up: not measured
    s = compute_summary(rows)
    assert (s.proxy_retried, s.retried) == (1, 1)
    assert compute_summary(records()).proxy_retried == 0  # no stage records at all

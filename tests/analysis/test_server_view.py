"""vLLM's own view per instance and the two-sided TTFT split, on committed 2 x H200 runs (1P1D P2P NCCL
GET at 16 req/s, 2048 -> 256; an older disagg run without a recorded serving setup), copied into
tests/fixtures/h200x2; expected means derived from the stored counter deltas (sum / count)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.runs import NA, Run, runs_from_results
from analysis.server_view import NO_METRICS, PhaseStats, instance_views, missing_reason, pooled_mean
from analysis.ttft_sides import ttft_sides
from experiments.schema import RunResult, ServerMetrics

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "h200x2"  # copies of committed runs
PD16 = RUNS / "20261129-203629-disagg-rate16"
REPLICAS16 = RUNS / "20261129-202814-passthrough-rate16"
OLD_DISAGG = RUNS / "20261122-045741-disagg-rate10-seed1"
P_URL, D_URL = "http://127.0.0.1:8100", "http://127.0.0.1:8200"


def load(path: Path) -> Run:
    return runs_from_results([RunResult.load(path)])[0]


def raw_mean_ms(result: RunResult, url: str, histogram: str) -> float:
    """Mean of one of vLLM's histograms straight from the stored counter deltas: 1000 x sum / count."""
    deltas = result.server_metrics[url].deltas
    return 1000 * deltas[f"vllm:{histogram}_sum{{}}"] / deltas[f"vllm:{histogram}_count{{}}"]


def stats(view_phase: object) -> PhaseStats:
    assert isinstance(view_phase, PhaseStats), view_phase
    return view_phase


def test_per_role_split_of_a_real_pd_run() -> None:
    result = RunResult.load(PD16)
    p, d = instance_views(result)
    assert (p.name, p.role, d.name, d.role) == ("prefill0", "prefill", "decode0", "decode")
    assert p.requests == d.requests == 204
    # P: each mean is sum / count of the stored counter deltas (prefill: 33.269 s over 204 = 163.1 ms)
    prefill, queue, ttft = (raw_mean_ms(result, P_URL, h) for h in ("request_prefill_time_seconds",
                            "request_queue_time_seconds", "time_to_first_token_seconds"))  # fmt: skip
    assert stats(p.phase("prefill")).mean == pytest.approx(prefill) == pytest.approx(163.08, abs=0.01)
    assert stats(p.phase("queue")).mean == pytest.approx(queue)
    assert stats(p.phase("ttft")).mean == pytest.approx(ttft)
    assert stats(p.phase("decode")).mean == 0.0  # max_tokens=1: the _sum never changed, so not stored
    assert p.front_end_ms == pytest.approx(ttft - queue - prefill)
    # TTFT p50 from buckets: rank 102 of 204 in (0.1, 0.25] s with 29 below and 107 inside
    p50 = p.phase("ttft").p50  # type: ignore[union-attr]
    assert (p50.value, p50.lower, p50.upper) == pytest.approx((100 + 150 * 73 / 107, 100, 250))
    assert p.external_share == 0.0
    # D: nearly every prompt token came from external KV; its own first step is short
    assert d.external_share == pytest.approx(417588 / 417792)
    assert stats(d.phase("prefill")).mean == pytest.approx(
        raw_mean_ms(result, D_URL, "request_prefill_time_seconds")
    )
    assert stats(d.phase("itl")).mean == pytest.approx(
        raw_mean_ms(result, D_URL, "inter_token_latency_seconds")
    )
    inference = d.phase("inference")
    assert isinstance(inference, NA) and "not stored" in inference.reason


def test_replicas_pool_by_request_count() -> None:
    views = instance_views(RunResult.load(REPLICAS16))
    assert [v.role for v in views] == ["serving", "serving"]
    means = [stats(v.phase("prefill")).mean for v in views]
    assert pooled_mean(views, "prefill") == pytest.approx(sum(means) / 2)  # 102 requests each


def test_roles_are_inferred_without_a_serving_setup() -> None:
    result = RunResult.load(OLD_DISAGG)
    assert result.metadata.serving_setup is None
    p, d = instance_views(result)
    assert (p.url, p.role, d.url, d.role) == (
        "http://127.0.0.1:8100",
        "prefill",
        "http://127.0.0.1:8200",
        "decode",
    )
    assert "inferred from external KV" in d.role_source
    assert stats(p.phase("prefill")).mean == pytest.approx(
        raw_mean_ms(result, P_URL, "request_prefill_time_seconds")
    )


def test_roles_are_inferred_when_the_scraped_urls_are_not_the_setup_s() -> None:
    result = RunResult.load(PD16)
    result.server_metrics = {u.replace("127.0.0.1", "localhost"): m for u, m in result.server_metrics.items()}
    p, d = instance_views(result)
    assert (p.role, d.role) == ("prefill", "decode") and "inferred" in d.role_source


def test_missing_metrics_say_why() -> None:
    result = RunResult.load(PD16)
    url = "http://127.0.0.1:8200"
    result.server_metrics[url] = ServerMetrics(error="connection refused")
    p, d = instance_views(result)
    assert p.error is None
    assert d.error == "scrape failed: connection refused" and "connection refused" in str(d.phase("ttft"))
    assert missing_reason(result) is None  # P still has its metrics
    result.server_metrics = {}
    assert instance_views(result) == [] and missing_reason(result) == NO_METRICS


def test_ttft_from_both_sides() -> None:
    run = load(PD16)
    rows = {r.part: r for r in ttft_sides(run) or []}
    # The proxy's legs, from the records' own stage times (ms)
    leg = np.mean([r.stages.prefill_ms for r in run.result.successes() if r.stages])
    first_chunk = np.mean([r.stages.decode_first_chunk_ms for r in run.result.successes() if r.stages])
    assert rows["prefill leg"].mean == pytest.approx(leg)
    hists = ("request_prefill_time_seconds", "request_queue_time_seconds", "time_to_first_token_seconds")
    raw = {(u, h): raw_mean_ms(run.result, u, h) for u in (P_URL, D_URL) for h in hists}
    assert rows["P prefill"].mean == pytest.approx(raw[P_URL, "request_prefill_time_seconds"])
    assert rows["P prefill"].depth == 1 and rows["P prefill"].source == "vLLM, prefill side"
    # what the proxy's legs hold beyond each instance's own TTFT
    p_ttft, d_ttft = raw[P_URL, "time_to_first_token_seconds"], raw[D_URL, "time_to_first_token_seconds"]
    assert rows["outside P (leg - P TTFT)"].mean == pytest.approx(leg - p_ttft)
    assert rows["outside D (first chunk - D TTFT)"].mean == pytest.approx(first_chunk - d_ttft)
    d_front = d_ttft - raw[D_URL, "request_queue_time_seconds"] - raw[D_URL, "request_prefill_time_seconds"]
    assert rows["D front end (TTFT - queue - prefill)"].mean == pytest.approx(d_front)
    assert ttft_sides(load(REPLICAS16)) is None  # no prefill leg

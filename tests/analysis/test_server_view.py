"""vLLM's own view per instance and the two-sided TTFT split, on committed 2 x H200 runs (1P1D P2P NCCL
GET at 16 req/s, 2048 -> 256; an older disagg run without a recorded serving setup)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.runs import NA, Run, runs_from_results
from analysis.server_view import NO_METRICS, PhaseStats, instance_views, missing_reason, pooled_mean
from analysis.ttft_sides import ttft_sides
from experiments.schema import RunResult, ServerMetrics

REPO = Path(__file__).resolve().parents[2]
FRONTIER = REPO / "results" / "h200x2" / "frontier" / "prefill-heavy"
PD16 = FRONTIER / "pd" / "20261129-203629-disagg-rate16"
REPLICAS16 = FRONTIER / "replicas" / "20261129-202814-passthrough-rate16"
OLD_DISAGG = REPO / "results" / "h200x2" / "20261122-045741-disagg-rate10-seed1"


def load(path: Path) -> Run:
    return runs_from_results([RunResult.load(path)])[0]


def stats(view_phase: object) -> PhaseStats:
    assert isinstance(view_phase, PhaseStats), view_phase
    return view_phase


def test_per_role_split_of_a_real_pd_run() -> None:
    p, d = instance_views(RunResult.load(PD16))
    assert (p.name, p.role, d.name, d.role) == ("prefill0", "prefill", "decode0", "decode")
    assert p.requests == d.requests == 204
    # P: mean = sum / count of the deltas
    assert stats(p.phase("prefill")).mean == pytest.approx(1000 * 33.26915283 / 204)  # 163.1 ms
    assert stats(p.phase("queue")).mean == pytest.approx(4.944, abs=1e-3)
    assert stats(p.phase("ttft")).mean == pytest.approx(213.09, abs=0.01)
    assert stats(p.phase("decode")).mean == 0.0  # max_tokens=1: the _sum never changed, so not stored
    assert p.front_end_ms == pytest.approx(213.09 - 4.944 - 163.08, abs=0.02)
    # TTFT p50 from buckets: rank 102 of 204 in (0.1, 0.25] s with 29 below and 107 inside
    p50 = p.phase("ttft").p50  # type: ignore[union-attr]
    assert (p50.value, p50.lower, p50.upper) == pytest.approx((100 + 150 * 73 / 107, 100, 250))
    assert p.external_share == 0.0
    # D: nearly every prompt token came from external KV; its own first step is short
    assert d.external_share == pytest.approx(417588 / 417792)
    assert stats(d.phase("prefill")).mean == pytest.approx(13.545, abs=1e-3)
    assert stats(d.phase("itl")).mean == pytest.approx(6.918, abs=1e-3)
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
    assert stats(p.phase("prefill")).mean == pytest.approx(98.5, abs=0.1)


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
    assert rows["prefill leg"].mean == pytest.approx(run.stages.prefill_ms.mean)  # type: ignore[union-attr]
    assert rows["P prefill"].mean == pytest.approx(163.08, abs=0.01)
    assert rows["P prefill"].depth == 1 and rows["P prefill"].source == "vLLM, prefill side"
    # what the proxy's legs hold beyond each instance's own TTFT
    assert rows["outside P (leg - P TTFT)"].mean == pytest.approx(218.23 - 213.09, abs=0.01)
    assert rows["outside D (first chunk - D TTFT)"].mean == pytest.approx(39.21 - 32.73, abs=0.01)
    assert rows["D front end (TTFT - queue - prefill)"].mean == pytest.approx(32.73 - 0.01 - 13.545, abs=0.01)
    assert ttft_sides(load(REPLICAS16)) is None  # no prefill leg

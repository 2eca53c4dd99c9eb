"""The prefill instance beside independent ones: overlap arithmetic on hand-made intervals, and the
evidence on the committed 2 x H200 frontier runs at 4 req/s (2048 -> 256)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.prefill_inflation import (
    OverlapEvidence,
    PrefillRow,
    explanation,
    isolated_pairs,
    overlap_evidence,
    prefill_rows,
)
from analysis.runs import Run, runs_from_results
from experiments.schema import RunResult

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "h200x2"  # copies of committed runs
AT_4 = {
    "pd": RUNS / "20261129-203423-disagg-rate4",
    "single": RUNS / "20261129-204307-traditional-rate4",
    "replicas": RUNS / "20261129-202607-passthrough-rate4",
}


P = "http://127.0.0.1:8100"  # the pair's prefill instance


def brute_force(intervals: list[tuple[int, int]]) -> tuple[float, float, list[float]]:
    """From raw (start, end) ns stamps, pair by pair: the share of intervals that overlap another, the
    median of those that overlap none (ms), and the signed end gaps (later end - earlier end, ms) of the
    pairs that overlap each other and nothing else and started more than 5 ms apart (closer starts
    likely shared one engine step)."""
    iv = sorted(intervals)
    others = [
        {j for j, (b0, b1) in enumerate(iv) if j != i and a0 < b1 and b0 < a1}
        for i, (a0, a1) in enumerate(iv)
    ]
    share = sum(bool(o) for o in others) / len(iv)
    solo = float(np.median([(a1 - a0) / 1e6 for (a0, a1), o in zip(iv, others, strict=True) if not o]))
    gaps = [(iv[j][1] - iv[i][1]) / 1e6 for i, o in enumerate(others) if len(o) == 1
            for j in o if j > i and others[j] == {i} and (iv[j][0] - iv[i][0]) / 1e6 > 5.0]  # fmt: skip
    return share, solo, gaps


def raw_prefill_ms(result: RunResult, urls: tuple[str, ...]) -> float:
    """vLLM's mean prefill time over the instances at `urls`, from the stored counter deltas."""
    key = "vllm:request_prefill_time_seconds_{}{{}}"
    deltas = [result.server_metrics[u].deltas for u in urls]
    return 1000 * sum(d[key.format("sum")] for d in deltas) / sum(d[key.format("count")] for d in deltas)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    loaded = runs_from_results([RunResult.load(p) for p in AT_4.values()])
    return {r.setup_kind if r.setup_kind != "xpyd" else "pd": r for r in loaded}


def testisolated_pairs_on_hand_made_intervals() -> None:
    iv = np.array([[0, 100], [50, 150], [300, 400], [350, 420], [360, 500], [600, 700]], dtype=float)
    # (0, 100) and (50, 150) overlap each other only; the three from 300 overlap in a chain, not a pair
    assert isolated_pairs(iv) == [(50.0, 100.0, 50.0)]
    assert isolated_pairs(np.array([[0, 10], [20, 30]], dtype=float)) == []


def test_overlapping_prefills_end_together_on_p_only(runs: dict[str, Run]) -> None:
    pd, single = overlap_evidence(runs["pd"]), overlap_evidence(runs["single"])
    assert pd is not None and single is not None
    assert pd.interval == "proxy prefill leg" and single.interval == "client TTFT"
    assert pd.count == single.count == 200
    # The same evidence, brute force from the raw stamps: the proxy's prefill leg on P, the client's
    # send -> first token on one instance.
    ok = [r for r in runs["pd"].result.successes() if r.stages]
    share, solo, gaps = brute_force(
        [(r.stages.t_prefill_start_mono_ns, r.stages.t_prefill_end_mono_ns) for r in ok]
    )  # type: ignore[union-attr,misc]
    assert (pd.overlapped_share, pd.solo_median_ms, pd.pairs) == pytest.approx((share, solo, len(gaps)))
    assert pd.pair_end_gap_ms == pytest.approx(float(np.median(gaps)))
    ok = runs["single"].result.successes()
    share, solo, gaps = brute_force([(r.sent_mono_ns, r.first_token_mono_ns) for r in ok])  # type: ignore[misc]
    assert (single.overlapped_share, single.solo_median_ms) == pytest.approx((share, solo))
    assert single.pair_end_gap_ms == pytest.approx(float(np.median(gaps)))
    # a prefill alone costs the same on both (~66 ms) ...
    assert pd.solo_median_ms == pytest.approx(67.0, abs=1.0)
    assert single.solo_median_ms == pytest.approx(66.2, abs=1.0)
    # ... overlap is as frequent (47 % vs 45.5 %), but on P the earlier of a pair ends with the later one
    assert pd.overlapped_share == pytest.approx(0.47) and single.overlapped_share == pytest.approx(0.455)
    assert pd.pairs == 22 and pd.pair_end_gap_ms is not None and pd.pair_end_gap_ms < 1.0
    assert single.pair_end_gap_ms is not None and 50.0 < single.pair_end_gap_ms < 60.0


def test_rows_and_the_explanation(runs: dict[str, Run]) -> None:
    rows = prefill_rows(list(runs.values()))
    assert [(r.kind, r.instances) for r in rows] == [("single", 1), ("replicas", 2), ("xpyd", 1)]
    pd = rows[2]
    assert pd.rate == 4.0 and pd.prefill_ms == pytest.approx(raw_prefill_ms(runs["pd"].result, (P,)))
    # pooled over both replicas: both sums over both counts
    both = tuple(runs["replicas"].result.server_metrics)
    assert len(both) == 2 and rows[1].prefill_ms == pytest.approx(
        raw_prefill_ms(runs["replicas"].result, both)
    )
    assert (pd.prefill_ms, rows[1].prefill_ms) == pytest.approx((75.79, 50.04), abs=0.01)  # as the text says
    text = explanation(rows)
    assert text is not None
    # the replicas saw 3 overlapping pairs at 4 req/s, too few: the single instance is the reference
    assert "mean prefill time of 76 ms against 50 ms on 2 replicas and 59 ms on 1 instance" in text
    assert "ends 0.5 ms before the later one on P (median of 22 pairs), against 54 ms on 1 instance" in text
    assert "held until the later one finishes" in text and ", inflated." in text
    assert explanation(rows[:2]) is None  # no P/D run
    assert text.startswith("At 4 req/s (2048 -> 256 tokens) the prefill instance")


def test_no_hold_claimed_when_the_end_gaps_do_not_show_one() -> None:
    def row(kind: str, prefill: float, gap: float) -> PrefillRow:
        evidence = OverlapEvidence("t", 100, 70.0, 0.5, 66.0, 10, gap, 70.0)
        return PrefillRow(kind, "8 -> 2", kind, kind, 4.0, 1, prefill, 0.0, 12.0, evidence)

    text = explanation([row("replicas", 50.0, 55.0), row("xpyd", 52.0, 50.0)])
    assert text is not None and ", not inflated." in text
    assert text.endswith("The end gaps do not show the earlier prefill held on P.")
    few = OverlapEvidence("t", 100, 70.0, 0.5, 66.0, 2, 0.5, 70.0)  # two pairs: too few to read
    assert (
        explanation(
            [row("replicas", 50.0, 55.0), PrefillRow("pd", "8 -> 2", "xpyd", "xpyd", 4.0, 1, 90, 0, 12, few)]
        )
        is None
    )

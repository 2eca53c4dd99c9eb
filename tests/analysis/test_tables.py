"""The comparison table's numbers against hand-computed values (golden runs, see tests/analysis/golden.py),
the TTFT split, and runs named and grouped by their serving setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.render import render_markdown
from analysis.runs import load_runs
from analysis.tables import Group, Row, compare_results, path_rows, stage_rows
from experiments.metrics import stage_summary
from experiments.schema import RunResult
from tests.analysis.golden import DIS, ONE, PD, SWEEP, TRAD, derived_run


def row(group: Group, label: str) -> Row:
    return next(r for r in group.rows if r.title == label)


def approx(values: list, expected: list) -> bool:
    return all(
        (v is None and e is None) or (v is not None and e is not None and v == pytest.approx(e))
        for v, e in zip(values, expected, strict=True)
    )


def nums(group: Group, label: str) -> list[float | None]:
    r = row(group, label)
    return [r.number(i) for i in range(len(group.runs))]


def test_table_values_match_hand_computed_numbers() -> None:
    cmp = compare_results([DIS, TRAD], slo={"ttft": 150})
    (g,) = cmp.groups
    assert [r.label for r in g.runs] == [ONE, PD] and g.baseline == 0
    assert not cmp.forced and not cmp.sweep

    assert approx(nums(g, "TTFT p50 (ms)"), [200, 60])  # medians of 100/200/300 and 50/60/400
    assert row(g, "TTFT p50 (ms)").ratios[1] == pytest.approx(60 / 200)
    assert g.verdict(row(g, "TTFT p50 (ms)")) == PD
    # linear percentile: p90 of 3 values = second + 0.8 * (third - second)
    assert approx(nums(g, "TTFT p90 (ms)"), [200 + 0.8 * 100, 60 + 0.8 * 340])
    assert g.verdict(row(g, "TTFT p90 (ms)")) == ONE
    # TPOT = (E2E - TTFT) / 3: traditional 30, 30, 200/3; disagg 20, 20, 100/3
    assert approx(nums(g, "TPOT p50 (ms)"), [30, 20])
    assert approx(nums(g, "E2E p50 (ms)"), [290, 120])  # E2E 190/290/500 and 110/120/500
    assert approx(nums(g, "ITL p50 (ms)"), [30, 20])

    assert approx(nums(g, "request throughput (req/s)"), [3 / 2.5, 3 / 2.5])
    assert g.verdict(row(g, "request throughput (req/s)")) == "tie"
    assert approx(nums(g, "output token throughput (tok/s)"), [12 / 2.5, 12 / 2.5])
    # goodput recomputed for TTFT <= 150 ms: 1 and 2 requests in 2.5 s (higher is better)
    assert approx(nums(g, "goodput (req/s)"), [1 / 2.5, 2 / 2.5])
    assert row(g, "goodput (req/s)").ratios[1] == pytest.approx(2.0)
    assert g.verdict(row(g, "goodput (req/s)")) == PD

    j_trad, j_dis = (300 + 50) / 3, (150 + 180) / 3
    assert approx(nums(g, "per request, all GPUs (J)"), [j_trad, j_dis])
    assert row(g, "per request, all GPUs (J)").ratios[1] == pytest.approx(j_dis / j_trad)
    assert g.verdict(row(g, "per request, all GPUs (J)")) == PD
    # static = idle power x 2.5 s: (40 + 20) W x 2.5 s = 150 J in both runs
    assert approx(nums(g, "per request, all GPUs, static (J)"), [150 / 3, 150 / 3])
    assert approx(nums(g, "per request, all GPUs, dynamic (J)"), [200 / 3, 180 / 3])
    assert approx(nums(g, "per output token, all GPUs (J)"), [350 / 12, 330 / 12])
    assert approx(nums(g, "per request, serving GPUs (J)"), [300 / 3, 330 / 3])  # the idle GPU left out
    assert g.verdict(row(g, "per request, serving GPUs (J)")) == ONE
    assert approx(nums(g, "GPU 0 per request, dynamic (J)"), [(300 - 100) / 3, (150 - 100) / 3])
    assert approx(nums(g, "GPU 1 per output token, total (J)"), [50 / 12, 180 / 12])
    assert approx(nums(g, "GPU 1 average power (W)"), [50 / 2.5, 180 / 2.5])
    assert row(g, "GPU 1 average power (W)").best == []  # power is context, no verdict
    assert row(g, "GPU 0 role").values == ["serving", "prefill"]


def test_goodput_uses_the_measured_slo_without_slo_flag() -> None:
    (g,) = compare_results([TRAD, DIS]).groups  # measured with ttft <= 250, tpot <= 100
    assert approx(nums(g, "goodput (req/s)"), [2 / 2.5, 2 / 2.5])


def test_ttft_split_from_stage_timings() -> None:
    run = next(r for r in load_runs([DIS]) if r.mode == "disagg")
    rows = stage_rows(run)
    assert rows is not None
    split = {name: (mean, p50) for name, mean, p50, _, _ in rows}
    assert split["prefill leg"] == (pytest.approx(365 / 3), pytest.approx(35))
    assert split["KV transfer + decode queue (decode first chunk)"][1] == pytest.approx(20)
    assert split["proxy overhead"][1] == pytest.approx(3)
    # what the proxy cannot see: TTFT - (prefill + first chunk + overhead) = 2, 2, 5 ms
    assert split["client side (network, event loop)"] == (pytest.approx(3), pytest.approx(2))
    assert sum(share or 0 for *_, share in rows) == pytest.approx(100)
    assert stage_rows(load_runs([TRAD])[0]) is None


def test_runs_are_named_grouped_and_ordered_by_serving_setup() -> None:
    cmp = compare_results([*SWEEP, TRAD])
    assert [r.label for r in cmp.runs] == [f"{ONE}@4", f"{PD}@1", f"{PD}@2", f"{PD}@4"]  # baseline first
    assert cmp.sweep
    four = next(g for g in cmp.groups if g.load_text == "4 req/s")
    assert [r.label for r in four.runs] == [f"{ONE}@4", f"{PD}@4"] and four.baseline == 0
    assert f"at 1 req/s only {PD}@1 ran: no ratio across setups there." in cmp.notes


def test_results_without_a_setup_fall_back_to_their_mode(tmp_path: Path) -> None:
    def forget_setup(result: RunResult) -> None:
        result.metadata.serving_setup = None

    runs = load_runs([derived_run(r, tmp_path / r.name, forget_setup) for r in (DIS, TRAD)])
    assert [(r.label, r.setup_kind) for r in runs] == [("traditional", "single"), ("disagg", "xpyd")]


def test_requests_by_path_in_the_tables_and_the_report(tmp_path: Path) -> None:
    """The golden disagg run's three requests (TTFT 50, 60, 400 ms) as if a policy had sent the first
    one local and the other two split: the report groups them by path."""

    def route(result: RunResult) -> None:
        measured = result.measured()
        for r, path in zip(measured, ("local", "split", "split"), strict=True):
            assert r.stages is not None
            r.stages.path = path
        result.stages = stage_summary(result.records)

    run_dir = derived_run(DIS, tmp_path / "routed", route)
    cmp = compare_results([run_dir, TRAD])
    rows = {(path, n): (ttft_p50, prompt) for _, path, n, ttft_p50, _, _, _, prompt in path_rows(cmp.runs)}
    assert set(rows) == {("local", 1), ("split", 2)}
    assert rows[("local", 1)][0] == pytest.approx(50)
    assert rows[("split", 2)][0] == pytest.approx((60 + 400) / 2)
    report = render_markdown(cmp)
    assert "## Requests by path" in report and "| split | 2 |" in report
    assert "## Requests by path" not in render_markdown(compare_results([DIS, TRAD]))  # no policy, no section

"""Plot helpers that can be checked by value."""

from __future__ import annotations

from analysis.plots import pareto_front, run_colors, setup_colors
from analysis.runs import load_runs
from tests.analysis.golden import DIS, ONE, PD, SWEEP, TRAD


def test_pareto_front() -> None:
    # (latency, J/request): the last point is beaten by the second in both
    assert pareto_front([60, 100, 250, 298], [80, 60, 50, 116]) == [0, 1, 2]
    assert pareto_front([10, 10, 20], [5, 7, 1]) == [0, 2]


def test_colors_follow_the_setup_kind() -> None:
    runs = load_runs([TRAD, DIS])
    assert run_colors(runs) == ["tab:blue", "tab:orange"]  # single, xpyd: as traditional and disagg were
    sweep = load_runs([TRAD, *SWEEP])
    assert setup_colors(sweep) == {ONE: "tab:blue", PD: "tab:orange"}
    assert len(set(run_colors(sweep))) == 4  # several runs of one kind: one colour each

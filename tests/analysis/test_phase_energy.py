"""The comparison report's energy by phase, side by side, on committed 2 x H200 runs whose results predate
attribution (computed from their power.csv): the parts add up to the counter energy the result stored,
per-token rows divide by the run's tokens, and what does not exist says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.runs import NA, load_runs
from analysis.tables import Group, build_comparison
from experiments.schema import RunResult

FRONTIER = Path(__file__).resolve().parents[2] / "results" / "h200x2" / "frontier" / "prefill-heavy"
RUNS = [
    FRONTIER / "single" / "20261129-204410-traditional-rate8",
    FRONTIER / "pd" / "20261129-203526-disagg-rate8",
]


def value(group: Group, title: str, i: int) -> object:
    return next(r for r in group.rows if r.title == title).values[i]


def test_phases_side_by_side_add_up_to_each_runs_counter_energy() -> None:
    cmp = build_comparison(load_runs(RUNS))
    (g,) = cmp.groups
    for i, run in enumerate(g.runs):
        raw = RunResult.load(run.path)  # what the monitor stored, read apart from the analysis
        assert raw.energy is not None and raw.energy.attribution is None  # predates attribution
        counter_j = sum(gpu.energy_j or 0.0 for gpu in raw.energy.gpus)
        parts = [
            value(g, f"{name} (J)", i) for name in ("idle, all GPUs", "prefill", "decode", "KV transfer")
        ]
        numbers = [p for p in parts if isinstance(p, float)]
        assert sum(numbers) == pytest.approx(counter_j, rel=0.005)
        prompt_tokens = raw.summary.total_input_tokens  # type: ignore[union-attr]
        assert prompt_tokens == 200 * 2048
        per_token = value(g, "prefill per prompt token (J)", i)
        assert isinstance(per_token, float)
        # successful measured requests: all 200 here, so the pooled figure is the prefill row / tokens
        assert per_token == pytest.approx(parts[1] / prompt_tokens, rel=1e-9)  # type: ignore[operator]
        host = value(g, "CPU packages (J)", i)
        assert isinstance(host, NA) and "not recorded" in host.reason
    single, pd = (r.setup_name for r in g.runs)
    assert single == "1 instance" and pd.startswith("1P1D")
    transfer_single = value(g, "KV transfer (J)", 0)
    assert isinstance(transfer_single, NA) and "co-located" in transfer_single.reason
    assert isinstance(value(g, "KV transfer (J)", 1), float)

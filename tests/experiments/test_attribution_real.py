"""Attribution on committed 2 x H200 runs (their power.csv kept beside result.json.xz): every GPU's counter
energy is accounted for, roles decide phases, replicas charge each request to the GPU that served it."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.attribution import attribute
from experiments.schema import RunResult

FRONTIER = Path(__file__).resolve().parents[2] / "results" / "h200x2" / "frontier" / "prefill-heavy"
RUNS = {
    "single": FRONTIER / "single" / "20261129-204410-traditional-rate8",
    "pd": FRONTIER / "pd" / "20261129-203526-disagg-rate8",
    "replicas": FRONTIER / "replicas" / "20261129-202710-passthrough-rate8",
}


@pytest.mark.parametrize("setup", list(RUNS))
def test_counter_energy_is_accounted_for_per_gpu(setup: str) -> None:
    res = RunResult.load(RUNS[setup])
    att = attribute(res)
    assert res.energy is not None
    for g in att.gpus:
        raw = res.energy.gpu(g.index)
        assert raw is not None and raw.energy_j is not None and raw.idle_power_w is not None
        assert g.energy_j == raw.energy_j
        parts = g.idle_j + g.prefill_j + g.decode_j + g.transfer_j
        assert abs(parts - raw.energy_j) <= 0.005 * raw.energy_j
        if raw.role == "idle":  # the single instance's second GPU served nothing
            assert g.idle_j == raw.energy_j and g.fit is None
        else:
            assert g.idle_j == pytest.approx(raw.idle_power_w * raw.duration_s)
            assert g.fit is not None and g.fit.r2 is not None and g.fit.samples > 100  # 100 ms over ~25 s
    # the 4 warm-up requests ran before the window: no share of it; every measured one has one
    assert [r.index for r in res.records if r.energy is not None] == [r.index for r in res.measured()]
    records = [r.energy for r in res.records if r.energy is not None]
    assert len(records) == 200 and len(res.records) == 204
    assert sum(e.total_j for e in records) + att.idle_j == pytest.approx(att.energy_j, rel=0.005)
    assert att.totals.requests == res.summary.completed == 200  # type: ignore[union-attr]
    assert att.totals.prompt_tokens == 200 * 2048 and att.totals.decode_tokens == 200 * 255


def test_pd_roles_and_replica_routing() -> None:
    pd = RunResult.load(RUNS["pd"])
    att = attribute(pd)
    by_role = {g.role: g for g in att.gpus}
    assert by_role["prefill"].decode_j == 0.0 and by_role["decode"].prefill_j == 0.0
    assert by_role["prefill"].prefill_j > 0 and by_role["decode"].decode_j > 0
    assert all(r.energy is not None and r.energy.transfer_j is not None for r in pd.measured())

    rep = RunResult.load(RUNS["replicas"])
    att = attribute(rep)
    served = {g.index: 0.0 for g in att.gpus}
    for r in rep.measured():
        assert r.stages is not None and r.stages.decode_url is not None and r.energy is not None
        served[0 if r.stages.decode_url.endswith(":8100") else 1] += r.energy.total_j
    for g in att.gpus:  # each request's joules come from the GPU its instance ran on
        assert served[g.index] == pytest.approx(g.prefill_j + g.decode_j, rel=1e-9)

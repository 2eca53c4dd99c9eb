"""Reading measured runs (results/h200x2) into what validation and the KV fit use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from planner.measured import MeasuredResultError, load_measured

H200 = Path(__file__).resolve().parents[2] / "results" / "h200x2"


@pytest.mark.parametrize(
    ("run", "setup", "rate", "j_serving"),
    [
        ("20261122-044143-disagg-rate4", "1P1D", 4.0, 210.0),
        ("20261122-045929-traditional-rate10-seed1", "single", 10.0, 75.2),
        ("20261122-044911-passthrough-rate10", "replicas:2", 10.0, 139.4),
    ],
)
def test_measured_runs_give_setup_rate_latencies_and_joules(
    run: str, setup: str, rate: float, j_serving: float
) -> None:
    m = load_measured(H200 / run)
    assert (m.setup.name, m.rate) == (setup, rate)
    assert m.slo == {"ttft": 1000.0, "tpot": 50.0}
    assert len(m.ttft_ms) == len(m.tpot_ms) == len(m.prompt_tokens) == 200
    assert set(m.prompt_tokens.tolist()) == {2048} and set(m.output_tokens.tolist()) == {256}
    assert m.j_per_request == pytest.approx(j_serving, abs=0.05)  # the README's table
    assert m.static_j_per_request + m.dynamic_j_per_request == pytest.approx(m.j_per_request)
    assert np.all(m.ttft_ms > 0) and np.all(m.tpot_ms > 0)


def test_stage_timings_are_there_for_pairs_and_nan_otherwise() -> None:
    pair = load_measured(H200 / "20261122-044143-disagg-rate4")
    assert np.median(pair.decode_first_chunk_ms) == pytest.approx(26.6, abs=1.0)
    assert not np.any(np.isnan(pair.prefill_leg_ms))
    single = load_measured(H200 / "20261122-044458-traditional-rate4")
    assert np.all(np.isnan(single.decode_first_chunk_ms))


def test_a_run_without_a_recognisable_setup_is_refused(tmp_path: Path) -> None:
    doc = orjson.loads((H200 / "20261122-044143-disagg-rate4" / "result.json").read_bytes())
    doc["metadata"]["config"]["gpu_roles"] = {"0": "serving"}  # a disagg run whose roles name no pair
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_bytes(orjson.dumps(doc))
    with pytest.raises(MeasuredResultError, match="cannot tell the setup"):
        load_measured(tmp_path / "run")

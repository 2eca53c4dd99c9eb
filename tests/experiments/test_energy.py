"""EnergyMeter over the simulated NVML backend: windows, static/dynamic split, per-request figures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments.energy import EnergyMeter
from monitor import SimulatedNvmlBackend

IDLE_W, BUSY_W = {0: 80.0, 1: 60.0}, {0: 380.0, 1: 260.0}


def _records(n: int, out_tokens: int, in_tokens: int) -> list[dict]:
    return [
        {"warmup": False, "ok": True, "completion_tokens": out_tokens, "prompt_tokens": in_tokens}
        for _ in range(n)
    ] + [{"warmup": True, "ok": True, "completion_tokens": 999, "prompt_tokens": 999}]


def test_window_energy_split_and_per_request(tmp_path: Path) -> None:
    busy_from: list[float] = []

    def power(gpu: int, t: float) -> float:
        return BUSY_W[gpu] if busy_from and t >= busy_from[0] else IDLE_W[gpu]

    backend = SimulatedNvmlBackend(n_gpus=2, power_w=power)
    meter = EnergyMeter([0, 1], {0: "prefill", 1: "decode"}, 0.02, backend, tmp_path / "power.csv")
    meter.start()
    meter.measure_idle(0.6)
    busy_from.append(time.monotonic() - backend.t0)  # the trace's t counts from the backend's start
    meter.begin()
    time.sleep(1.5)
    meter.end()
    meter.stop()
    sec = meter.section(_records(10, 100, 400))
    assert sec["available"] and sec["complete"]
    gpus = {g["index"]: g for g in sec["gpus"]}
    for gpu in (0, 1):
        g = gpus[gpu]
        assert g["idle_power_w"] == pytest.approx(IDLE_W[gpu], rel=0.03)
        # the counter steps every 100 ms, so a 1.5 s window is exact to within ~one step
        assert g["energy_j"] == pytest.approx(BUSY_W[gpu] * g["duration_s"], rel=0.05)
        assert g["static_j"] + g["dynamic_j"] == pytest.approx(g["energy_j"])
        assert g["dynamic_j"] == pytest.approx((BUSY_W[gpu] - IDLE_W[gpu]) * g["duration_s"], rel=0.08)
    total = sec["totals"]["all_gpus"]
    assert total["energy_j"] == pytest.approx(gpus[0]["energy_j"] + gpus[1]["energy_j"])
    assert total["j_per_request"] == pytest.approx(total["energy_j"] / 10)  # warm-up excluded
    assert total["j_per_output_token"] == pytest.approx(total["energy_j"] / 1000)
    assert total["j_per_input_token"] == pytest.approx(total["energy_j"] / 4000)
    assert (
        sec["phases"]["prefill_j"] == gpus[0]["energy_j"] and sec["phases"]["decode_j"] == gpus[1]["energy_j"]
    )
    assert (tmp_path / "power.csv").stat().st_size > 0 and sec["timeline"]["epoch_ns"]


def test_idle_gpu_is_reported_but_not_serving(tmp_path: Path) -> None:
    meter = EnergyMeter(
        [0, 1], {0: "serving", 1: "idle"}, 0.05, SimulatedNvmlBackend(n_gpus=2), tmp_path / "p.csv"
    )
    meter.start()
    meter.begin()
    time.sleep(0.5)
    meter.stop()  # closes the open window
    sec = meter.section(_records(2, 10, 10))
    assert sec["totals"]["serving_gpus"]["gpus"] == [0]
    assert sec["totals"]["all_gpus"]["gpus"] == [0, 1]
    assert sec["phases"] is None


def test_without_a_driver_energy_is_null_with_a_reason(tmp_path: Path) -> None:
    meter = EnergyMeter([0, 1], {}, 0.1, "nvml", tmp_path / "p.csv")
    meter.start()
    meter.begin()
    meter.stop()
    sec = meter.section(_records(1, 1, 1))
    assert sec["available"] is False and sec["totals"] is None
    assert "NVML" in sec["reason"]

"""EnergyMeter over the simulated NVML backend on virtual time: windows, idle power, the derived
static/dynamic split."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from experiments.energy import EnergyMeter
from experiments.schema import to_builtins
from monitor import SimulatedNvmlBackend
from monitor.clock import VirtualClock

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

IDLE_W, BUSY_W = {0: 80.0, 1: 60.0}, {0: 380.0, 1: 260.0}


def test_window_energy_split_and_per_request(tmp_path: Path) -> None:
    busy_from: list[float] = []

    def power(gpu: int, t: float) -> float:
        return BUSY_W[gpu] if busy_from and t >= busy_from[0] else IDLE_W[gpu]

    clock = VirtualClock()
    backend = SimulatedNvmlBackend(clock=clock, n_gpus=2, power_w=power, energy_read_cost_s=0.0)
    meter = EnergyMeter([0, 1], {0: "prefill", 1: "decode"}, 0.02, backend, tmp_path / "power.csv")
    meter.start()
    # By hand: the counter steps every 0.1 s. The idle baseline opens on the 0.1 s step; 0.6 s later
    # its end lands just on the 0.7 s step, which the first read already sees, so it closes on the
    # next one, 0.8 s (0.7 s: 56 J and 42 J). The window opens on the 0.9 s step, and 1.5 s later lands
    # on the 2.4 s one: it closes at 2.5 s, 1.6 s of busy power (608 J and 416 J).
    meter.measure_idle(0.6)
    busy_from.append(backend.now())
    meter.begin()
    clock.sleep(1.5)
    meter.end()
    meter.stop()
    sec = meter.section()
    assert sec.available and sec.complete and sec.idle_seconds == 0.6
    gpus = {g.index: g for g in sec.gpus}
    for gpu, busy_j in ((0, 608.0), (1, 416.0)):  # 380 W and 260 W x 1.6 s
        g = gpus[gpu]
        # Each boundary is stamped within +-0.5 ms of its step (1 ms polls, free reads).
        assert g.duration_s == pytest.approx(1.6, abs=0.00101)
        assert g.idle_power_w == pytest.approx(IDLE_W[gpu], rel=0.002)  # 56 J / 42 J over 0.7 s +- 1 ms
        assert g.energy_j == pytest.approx(busy_j)  # whole counter steps
        assert g.static_j + g.dynamic_j == pytest.approx(g.energy_j)
        assert g.dynamic_j == pytest.approx(busy_j - IDLE_W[gpu] * 1.6, rel=0.002)
    total = sec.totals("all_gpus")
    assert total is not None and total.energy_j == pytest.approx(gpus[0].energy_j + gpus[1].energy_j)
    assert total.static_j == pytest.approx(gpus[0].static_j + gpus[1].static_j)
    assert total.per(10) == pytest.approx(total.energy_j / 10)
    assert sec.phases is not None
    assert (sec.phases.prefill_j, sec.phases.decode_j) == (gpus[0].energy_j, gpus[1].energy_j)
    assert (tmp_path / "power.csv").stat().st_size > 0 and sec.timeline and sec.timeline.epoch_ns
    assert sec.monitor is not None and sec.monitor.backend == "sim" and sec.monitor.sample_count > 0


def test_idle_gpu_is_reported_but_not_serving(tmp_path: Path) -> None:
    backend = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=2)
    meter = EnergyMeter([0, 1], {0: "serving", 1: "idle"}, 0.05, backend, tmp_path / "p.csv")
    meter.start()
    meter.begin()
    backend.clock.sleep(0.5)
    meter.stop()  # closes the open window
    sec = meter.section()
    serving, every = sec.totals("serving_gpus"), sec.totals("all_gpus")
    assert serving is not None and every is not None
    assert (serving.gpus, every.gpus) == ([0], [0, 1])
    assert sec.phases is None
    assert all(g.idle_power_w is None and g.static_j is None for g in sec.gpus)  # no idle baseline


def test_without_a_driver_energy_is_null_with_a_reason(tmp_path: Path) -> None:
    meter = EnergyMeter([0, 1], {}, 0.1, "nvml", tmp_path / "p.csv")
    meter.start()
    meter.begin()
    meter.stop()
    sec = meter.section()
    assert sec.available is False and sec.totals() is None and sec.gpus == []
    assert sec.reason is not None and "NVML" in sec.reason


def test_golden_results_have_the_shape_a_real_meter_writes(tmp_path: Path) -> None:
    backend = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=2)
    meter = EnergyMeter([0, 1], {0: "prefill", 1: "decode"}, 0.05, backend, tmp_path / "p.csv")
    meter.start()
    meter.measure_idle(0.2)
    meter.begin()
    backend.clock.sleep(0.2)
    meter.stop()
    real = to_builtins(meter.section())
    golden = orjson.loads((GOLDEN / "disagg" / "result.json").read_bytes())["energy"]
    golden.pop("totals")  # written by RunResult (per-request figures need the summary)
    assert golden.keys() == real.keys()
    assert golden["monitor"].keys() == real["monitor"].keys() and len(real["monitor"]) > 15
    assert golden["gpus"][0].keys() == real["gpus"][0].keys()
    assert golden["window"].keys() == real["window"].keys()

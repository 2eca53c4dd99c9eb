"""SimulatedNvmlBackend keeps NVML semantics: integer units, stepping counter, wrap, 1 s average, errors."""

from __future__ import annotations

import pynvml
import pytest

from monitor import SimulatedNvmlBackend
from monitor.clock import VirtualClock


def make(clock: VirtualClock, power_w, **kw) -> SimulatedNvmlBackend:
    return SimulatedNvmlBackend(n_gpus=2, power_w=power_w, clock=clock, **kw)


def test_energy_counter_steps_on_its_period_in_integer_mj() -> None:
    clock = VirtualClock(start_s=100.0)
    sim = make(clock, lambda g, t: 250.0)
    assert sim.total_energy_mj(0) == 0
    clock.sleep(0.05)
    assert sim.total_energy_mj(0) == 0  # no update yet
    clock.sleep(0.06)  # t = 0.11: one update of 0.1 s at 250 W
    first = sim.total_energy_mj(0)
    assert isinstance(first, int)
    assert first == 25_000
    clock.sleep(0.05)  # t = 0.16: still the same step
    assert sim.total_energy_mj(0) == 25_000
    clock.sleep(0.05)  # t = 0.21
    assert sim.total_energy_mj(0) == 50_000


def test_counter_is_monotonic_and_wraps_at_the_configured_point() -> None:
    clock = VirtualClock(start_s=100.0)
    sim = make(clock, lambda g, t: 400.0, energy_wrap_mj=100_000, initial_energy_mj=90_000)
    clock.sleep(0.101)
    assert sim.total_energy_mj(0) == (90_000 + 40_000) % 100_000  # wrapped to 30_000
    clock.sleep(0.1)
    assert sim.total_energy_mj(0) == 70_000


def test_power_is_integer_mw_instant_versus_one_second_average() -> None:
    clock = VirtualClock(start_s=100.0)
    sim = make(clock, lambda g, t: 100.0 if t < 1.0 else 300.0004)
    clock.sleep(1.5)
    instant = sim.power_instant_mw(0)
    assert isinstance(instant, int)
    assert instant == 300_000  # quantized to mW
    # 1 s trailing average as of the last update (t = 1.5): half at 100 W, half at 300 W
    # (within the 1 ms trapezoid error of the step).
    assert sim.power_mw(0) == pytest.approx(200_000, abs=200)
    assert sim.power_average_mw(0) == sim.power_mw(0)
    clock.sleep(1.0)
    assert sim.power_mw(0) == 300_000


def test_lost_gpu_and_unsupported_fields_raise_real_nvml_errors() -> None:
    clock = VirtualClock(start_s=100.0)
    sim = make(clock, lambda g, t: 200.0, lost={1: [(1.0, 2.0)]}, unsupported={"power_instant", "energy"})
    clock.sleep(1.5)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        sim.power_mw(1)
    with pytest.raises(pynvml.NVMLError):
        sim.temperature_c(1)
    assert sim.power_mw(0) > 0  # the other GPU is fine
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.power_instant_mw(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.total_energy_mj(0)
    clock.sleep(1.0)  # t = 2.5: GPU 1 is back
    assert sim.power_mw(1) == 200_000
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        sim.power_mw(5)


def test_per_gpu_unsupported_and_bad_names() -> None:
    clock = VirtualClock(start_s=100.0)
    sim = make(clock, lambda g, t: 200.0, unsupported={0: {"power_average"}})
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.power_average_mw(0)
    assert sim.power_average_mw(1) == 200_000
    with pytest.raises(ValueError, match="unknown read names"):
        make(clock, lambda g, t: 1.0, unsupported={"powr"})


def test_other_fields_have_nvml_shapes() -> None:
    clock = VirtualClock(start_s=100.0)
    sim = make(clock, lambda g, t: 500.0)
    gpu_util, mem_util = sim.utilization(0)
    used, total = sim.memory(0)
    assert 0 <= mem_util <= gpu_util <= 100
    assert 0 < used < total
    assert sim.graphics_clock_mhz(0) > 1000
    assert sim.throttle_reasons(0) == 0
    assert isinstance(sim.pstate(0), int)
    assert sim.power_limit_mw(0) == 700_000
    assert sim.gpu_name(0).startswith("Simulated")

"""Energy windows against exact integrals of synthetic power traces (simulated NVML on virtual time:
the sampler is a real thread, but seconds pass only when the test sleeps on the clock)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitor import PowerMonitor, SimulatedNvmlBackend, WindowResult, read_window, window_json
from monitor.clock import VirtualClock
from monitor.energy import counter_delta_mj, integrate_between
from monitor.simulated import H200_ENERGY_READ_S

STEP_AT = 0.8  # s of simulated time
SINE_PERIOD = 0.7


def step_sine(gpu: int, t: float) -> float:
    """100 W base, +200 W step at STEP_AT (GPU 1: +120 W), 80 W sine."""
    step = (200.0 if gpu == 0 else 120.0) if t >= STEP_AT else 0.0
    return 100.0 + step + 80.0 * math.sin(2 * math.pi * t / SINE_PERIOD)


def step_sine_energy_j(gpu: int, a: float, b: float) -> float:
    """Exact integral of step_sine over [a, b]."""
    step = 200.0 if gpu == 0 else 120.0
    w = 2 * math.pi / SINE_PERIOD
    sine = 80.0 / w * (math.cos(w * a) - math.cos(w * b))
    return 100.0 * (b - a) + step * max(0.0, b - max(a, STEP_AT)) + sine


def sim_interval(sim: SimulatedNvmlBackend, window: WindowResult, gpu: int) -> tuple[float, float]:
    g = window.gpus[gpu]
    return sim.sim_time_of(g.start_monotonic_ns), sim.sim_time_of(g.end_monotonic_ns)


def run_window(mon: PowerMonitor, seconds: float, name: str = "w") -> WindowResult:
    mon.begin_window(name)
    mon.clock.sleep(seconds)
    return mon.end_window(name)


@pytest.mark.parametrize("read_cost_s", [0.0, H200_ENERGY_READ_S], ids=["free-reads", "h200-read-cost"])
def test_counter_energy_matches_the_exact_integral_within_its_stated_uncertainty(read_cost_s: float) -> None:
    sim = SimulatedNvmlBackend(
        clock=VirtualClock(),
        n_gpus=2,
        power_w=step_sine,
        counter_phase_s=0.037,
        energy_read_cost_s=read_cost_s,
    )
    with PowerMonitor([0, 1], 0.02, sim) as mon:
        sim.clock.sleep(0.2)
        called_ns = sim.clock.monotonic_ns()
        window = run_window(mon, 2.5)  # spans the step at 0.8 s and several sine periods
        returned_ns = sim.clock.monotonic_ns()
    for gpu in (0, 1):
        g = window.gpus[gpu]
        start_s, end_s = sim_interval(sim, window, gpu)
        exact = step_sine_energy_j(gpu, start_s, end_s)
        unc = g.boundary_uncertainty_s or 0.0
        peak = max(step_sine(gpu, t) for t in np.linspace(start_s - unc, end_s + unc, 3000))
        assert g.method == "energy_counter"
        assert g.complete, g.note
        # What the monitor guarantees, however busy the host: each boundary is stamped at a counter step
        # known to within its stated uncertainty, so the counter energy misses the exact integral by at
        # most the peak power over that uncertainty (plus the counter's 1 mJ steps). On an idle host
        # that is ~0.1%; on a busy one the bracket widens and the window says by how much.
        assert g.boundary_uncertainty_s is not None, g.note  # the sim's counter steps every 100 ms
        assert abs(g.energy_j - exact) <= peak * g.boundary_uncertainty_s + 0.002
        assert g.avg_power_w == pytest.approx(g.energy_j / g.duration_s)
        # The window lies after begin_window was called and before end_window returned.
        assert g.start_monotonic_ns >= called_ns - unc * 1e9 and g.end_monotonic_ns <= returned_ns
        assert g.avg_power_w <= g.peak_power_w <= peak + 1e-9  # type: ignore[operator]
        assert g.sample_count > 0 and g.expected_samples == round(g.duration_s / 0.02)
        assert g.failed_samples == 0
    assert window.total_energy_j == pytest.approx(sum(window.energy_j.values()))
    json.dumps(window_json(window), allow_nan=False)


def test_unsupported_counter_falls_back_to_integrated_instant_power_within_two_percent() -> None:
    sim = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=2, power_w=step_sine, unsupported={"energy"})
    with PowerMonitor([0, 1], 0.02, sim) as mon:
        sim.clock.sleep(0.2)
        window = run_window(mon, 2.0)
    summary = mon.to_json()
    for gpu in (0, 1):
        g = window.gpus[gpu]
        exact = step_sine_energy_j(gpu, *sim_interval(sim, window, gpu))
        assert g.method == "integrated_power"
        assert "energy counter unsupported" in g.note
        assert g.energy_j == pytest.approx(exact, rel=0.02)
        assert g.start_energy_mj is None
        assert "energy" in summary["gpus"][str(gpu)]["unsupported_reads"]


def test_idle_baseline_and_static_dynamic_split() -> None:
    def trace(gpu: int, t: float) -> float:
        return 60.0 if t < 1.5 else 300.0

    sim = SimulatedNvmlBackend(
        clock=VirtualClock(), n_gpus=2, power_w=trace, energy_read_cost_s=0.0
    )  # boundaries to ~1 ms
    with PowerMonitor([0, 1], 0.02, sim) as mon:
        idle = mon.measure_idle(0.8)
        sim.clock.sleep(1.6 - sim.now())
        window = run_window(mon, 1.2, "measured")
    split = mon.split_static_dynamic(window)
    for gpu in (0, 1):
        assert idle[gpu] == pytest.approx(60.0, rel=0.002)
        d = window.gpus[gpu].duration_s
        assert split[gpu]["static_j"] == pytest.approx(idle[gpu] * d)
        assert split[gpu]["dynamic_j"] == pytest.approx(240.0 * d, rel=0.01)
        assert split[gpu]["static_j"] + split[gpu]["dynamic_j"] == pytest.approx(window.gpus[gpu].energy_j)
    summary = mon.to_json()
    assert summary["idle_power_w"]["0"] == pytest.approx(60.0, rel=0.002)
    assert summary["static_dynamic_split"]["measured"]["1"]["dynamic_j"] == pytest.approx(
        split[1]["dynamic_j"]
    )


def test_counter_wrap_around_is_handled_even_several_times_per_window() -> None:
    wrap = 2**18  # 262 J: wraps about every 0.9 s at 300 W
    sim = SimulatedNvmlBackend(
        clock=VirtualClock(),
        n_gpus=1,
        power_w=lambda g, t: 300.0,
        energy_wrap_mj=wrap,
        initial_energy_mj=wrap - 50_000,
    )
    with PowerMonitor([0], 0.02, sim) as mon:
        sim.clock.sleep(0.1)
        window = run_window(mon, 2.5)
    g = window.gpus[0]
    assert g.boundary_uncertainty_s is not None, g.note  # constant power: the error is 300 W x that
    assert abs(g.energy_j - 300.0 * g.duration_s) <= 300.0 * g.boundary_uncertainty_s + 0.002
    assert g.complete, g.note
    naive_j = ((g.end_energy_mj or 0) - (g.start_energy_mj or 0)) / 1000
    assert abs(naive_j - g.energy_j) > 100  # the raw difference is wrong: the counter wrapped
    assert mon.to_json()["counter_read_every_s"] == 0.1  # the sampler reads it often enough to see wraps


def test_wraps_hidden_between_sparse_counter_reads_are_flagged() -> None:
    wrap = 2**17
    sim = SimulatedNvmlBackend(
        clock=VirtualClock(), n_gpus=1, power_w=lambda g, t: 300.0, energy_wrap_mj=wrap
    )
    mon = PowerMonitor([0], 0.1, sim)  # never started: only the two boundary reads
    window = run_window(mon, 1.0)
    assert not window.gpus[0].complete
    assert "more than one wrap" in window.gpus[0].note


def test_constant_power_windows_come_out_exact_on_virtual_time() -> None:
    """By hand: GPU 0 draws 200 W, GPU 1 100 W; the counter steps every 0.1 s of virtual time. The idle
    baseline opens at sim time 0 and waits for the first step (0.1 s); 1.0 s later it closes on the step
    after 1.1 s (the counter stepped just as the boundary came: it waits for the next, 1.2 s). 0.25 s
    later (1.45 s) the window opens on the 1.5 s step and, 1.0 s on, closes on the 2.6 s step: 1.1 s,
    so 220 J and 110 J, whole counter steps of 20 000 mJ and 10 000 mJ. Reads are free and polls 1 ms
    apart, so each boundary is bracketed to +-0.5 ms; samples every 20 ms give 55 in 1.1 s."""
    clock = VirtualClock()
    sim = SimulatedNvmlBackend(
        clock=clock, n_gpus=2, power_w=lambda g, t: 200.0 if g == 0 else 100.0, energy_read_cost_s=0.0
    )
    with PowerMonitor([0, 1], 0.02, sim) as mon:
        idle = mon.measure_idle(1.0)
        clock.sleep(0.25)
        window = run_window(mon, 1.0)
    assert idle == {0: pytest.approx(200.0), 1: pytest.approx(100.0)}
    for gpu, watts, joules, start_mj in ((0, 200.0, 220.0, 300_000), (1, 100.0, 110.0, 150_000)):
        g = window.gpus[gpu]
        assert g.energy_j == joules  # whole counter steps: exact
        assert (g.start_energy_mj, g.end_energy_mj) == (start_mj, start_mj + joules * 1000)  # 1.5 s in
        start_s, end_s = sim_interval(sim, window, gpu)
        assert (start_s, end_s) == (pytest.approx(1.4995, abs=1e-6), pytest.approx(2.5995, abs=1e-6))
        assert g.duration_s == pytest.approx(1.1, abs=1e-9)
        assert g.boundary_uncertainty_s == pytest.approx(0.001)  # +-0.5 ms at each end
        assert (g.sample_count, g.expected_samples, g.missing_samples) == (55, 55, 0)
        assert g.peak_power_w == watts and g.complete
    assert mon.skipped_ticks == 0


def test_counter_delta_and_interpolated_integral_helpers() -> None:
    assert counter_delta_mj([10, 30, 70], 2**64) == 60
    assert counter_delta_mj([90, 5], 100) == 15
    assert counter_delta_mj([90, 5, 95, 10], 100) == 15 + 90 + 15
    t = np.array([0, 1_000_000_000, 2_000_000_000])
    p = np.array([100.0, 200.0, np.nan])
    assert integrate_between(t, p, 250_000_000, 750_000_000) == pytest.approx(75.0)
    assert integrate_between(t, p, 0, 2_000_000_000) is None  # NaN at the end: interval not bracketed


def test_window_errors_and_repeated_names() -> None:
    sim = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=1, power_w=lambda g, t: 100.0)
    mon = PowerMonitor([0], 0.1, sim)
    with pytest.raises(KeyError, match="no open window"):
        mon.end_window("nope")
    mon.begin_window("a", align=False)
    with pytest.raises(ValueError, match="already open"):
        mon.begin_window("a")
    assert mon.end_window("a", align=False).gpus[0].energy_j is not None
    with pytest.raises(ValueError, match="interval"):
        PowerMonitor([0], 0.001, sim)
    with pytest.raises(ValueError, match="not present"):
        PowerMonitor([0, 3], 0.1, sim)


def test_a_window_reads_back_from_its_json_and_from_the_earlier_hand_written_form() -> None:
    """One window type, one serialization: `window_json` round-trips, and a monitor JSON written before
    (each GPU's index under `gpu`, derived `complete`/`total_energy_j` keys) still reads."""
    earlier = {
        "name": "run",
        "start_epoch_ns": 1_000,
        "end_epoch_ns": 3_001_000,
        "start_monotonic_ns": 10,
        "end_monotonic_ns": 3_000_010,
        "duration_s": 0.003,
        "interval_s": 0.1,
        "complete": True,
        "total_energy_j": 5.0,
        "gpus": {
            "2": {"gpu": 2, "energy_j": 3.0, "method": "energy_counter", "duration_s": 0.003},
            "5": {"gpu": 5, "energy_j": 2.0, "method": "energy_counter", "duration_s": 0.003},
        },
    }
    window = read_window(earlier)
    assert sorted(window.gpus) == [2, 5] and window.gpus[5].index == 5
    assert window.total_energy_j == 5.0 and window.complete
    assert read_window(json.loads(json.dumps(window_json(window)))) == window
    assert window.shifted(7).gpus[2].start_epoch_ns is None  # unknown times stay unknown
    moved = window.shifted(-1_000)
    assert (moved.start_epoch_ns, moved.end_epoch_ns) == (0, 3_000_000)
    assert moved.start_monotonic_ns == 10  # only epoch times move
    for bad in ({"name": "run", "gpus": {}}, {**earlier, "gpus": {"2": "3 J"}}):
        with pytest.raises(ValueError, match="not a monitor window"):
            read_window(bad)

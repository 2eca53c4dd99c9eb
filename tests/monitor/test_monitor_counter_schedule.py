"""The energy counter is read at the first and last sample and every period in between, not per sample."""

from __future__ import annotations

import numpy as np
import pytest

from monitor import PowerMonitor, SimulatedNvmlBackend
from monitor.clock import VirtualClock
from monitor.counter_schedule import COUNTER_UPDATE_S, CounterSchedule, wrap_safe_period_s

MS = 1_000_000


def reads_at(schedule: CounterSchedule, n_gpus: int, times_ms: list[int], cost_ms: float) -> list[list[int]]:
    """Drive a schedule with samples at `times_ms`; per GPU, the sample times that read its counter."""
    seen: list[list[int]] = [[] for _ in range(n_gpus)]
    for k, t in enumerate(times_ms):
        final = k == len(times_ms) - 1
        took: list[int | None] = [None] * n_gpus
        for g in range(n_gpus):
            if schedule.due(g, t * MS, final):
                seen[g].append(t)
                took[g] = int(cost_ms * MS)
        schedule.after_sample(t * MS, took)
    return seen


def test_slow_reads_get_a_long_period_spread_over_the_gpus() -> None:
    schedule = CounterSchedule(2, 0.01, None)
    seen = reads_at(schedule, 2, list(range(0, 10_001, 10)), cost_ms=3.5)
    assert schedule.period_s == pytest.approx(2 * 0.0035 / 0.002)  # 0.2% of a core: every 3.5 s
    assert seen[0] == [0, 1750, 5250, 8750, 10_000]  # first, then every 3.5 s from half a period, last
    assert seen[1] == [0, 3500, 7000, 10_000]


def test_cheap_reads_are_taken_at_the_counters_update_period_but_not_faster() -> None:
    schedule = CounterSchedule(1, 0.01, None)
    seen = reads_at(schedule, 1, list(range(0, 1001, 10)), cost_ms=0.01)
    assert schedule.period_s == COUNTER_UPDATE_S
    assert np.diff(seen[0][:-1]).tolist() == [100] * 9


def test_explicit_period_is_checked_and_capped_by_wrap_safety() -> None:
    with pytest.raises(ValueError, match="update period"):
        CounterSchedule(1, 0.01, 0.05)
    assert CounterSchedule(1, 0.01, 5.0, max_period_s=0.5).period_s == 0.5
    assert wrap_safe_period_s(2**64, 700.0) > 1e9  # the real counter never needs an extra read
    assert wrap_safe_period_s(2**18, 700.0) == pytest.approx(2**18 / 1.4e6 / 2)


def test_a_stall_restarts_the_period_instead_of_bursting() -> None:
    schedule = CounterSchedule(1, 0.1, 1.0)
    times = [0, 100, 200, 5000, 5100, 5200, 5300, 5400, 5500, 5600, 5700]
    assert reads_at(schedule, 1, times, cost_ms=1)[0] == [0, 5000, 5500, 5700]


def test_monitor_reads_the_counter_sparsely_and_windows_stay_exact() -> None:
    sim = SimulatedNvmlBackend(clock=VirtualClock(), n_gpus=2, power_w=lambda g, t: 200.0 + 100 * g)
    with PowerMonitor([0, 1], 0.02, sim, counter_read_every_s=0.5) as mon:
        sim.clock.sleep(0.1)
        mon.begin_window("w")
        sim.clock.sleep(1.5)
        window = mon.end_window("w")
    s = mon.samples()
    summary = mon.to_json()
    assert summary["counter_read_every_s"] == 0.5
    for g in (0, 1):
        read = ~np.isnan(s.value(g, "energy_mj"))
        assert read[0] and read[-1]  # first and last sample
        gaps_s = np.diff(s.monotonic_ns[read][:-1]) / 1e9  # GPU g's first period is (g + 1) / 2 of one
        assert len(gaps_s) >= 2 and gaps_s[0] > 0.2 * (g + 1) and (gaps_s[1:] > 0.4).all()
        # The first sample's read, one at the end of the shortened (staggered) first period, then at most
        # one per 0.5 s period (a stall restarts it, never bursts), and the last sample's.
        span_s = (s.monotonic_ns[-1] - s.monotonic_ns[0]) / 1e9
        assert read.sum() <= span_s / 0.5 + 3
        w = window.gpus[g]
        assert w.complete, w.note
        # Constant power: the energy misses power x duration by at most power x the stated uncertainty.
        assert w.boundary_uncertainty_s is not None, w.note
        power = 200.0 + 100 * g
        assert abs(w.energy_j - power * w.duration_s) <= power * w.boundary_uncertainty_s + 0.002
    n_reads = sum(int((~np.isnan(s.value(g, "energy_mj"))).sum()) for g in (0, 1))
    assert summary["read_latency_us"]["energy"]["n"] == n_reads

"""The virtual clock: time moves only when the driving thread sleeps, workers run at their wake-ups, and
a monitor run on it is the same run every time."""

from __future__ import annotations

import threading

import numpy as np

from monitor import PowerMonitor, SimulatedNvmlBackend
from monitor.clock import SYSTEM_CLOCK, VirtualClock

MS = 1_000_000


def test_workers_wake_at_their_virtual_times_and_the_driver_waits_for_them() -> None:
    clock = VirtualClock(start_s=10.0, epoch_s=1_700_000_000.0)
    woke: list[int] = []
    stop = threading.Event()

    def worker() -> None:
        while True:
            clock.sleep(0.1)
            if stop.is_set():
                return
            woke.append(clock.monotonic_ns())

    thread = clock.thread(worker, "worker")
    thread.start()
    clock.sleep(0.35)
    # Every wake-up up to now has run before the driver's sleep returned.
    assert woke == [10_100 * MS, 10_200 * MS, 10_300 * MS]
    assert clock.monotonic_ns() == 10_350 * MS
    assert clock.time_ns() == 1_700_000_000_350 * MS  # epoch time moves with it
    stop.set()
    clock.join(thread, 5.0)  # drives time to the worker's next wake-up, where it sees the stop
    assert not thread.is_alive() and len(woke) == 3 and clock.monotonic_ns() == 10_400 * MS


def test_join_drives_time_while_the_worker_still_spends_it() -> None:
    clock = VirtualClock(start_s=0.0)
    stop = threading.Event()
    finished: list[int] = []

    def worker() -> None:
        while not stop.is_set():
            clock.sleep(0.25)
        clock.busy(0.25)  # a last read that takes 250 ms, after the stop
        finished.append(clock.monotonic_ns())

    thread = clock.thread(worker, "worker")
    thread.start()
    clock.sleep(1.0)
    stop.set()
    clock.join(thread, 5.0)  # the stop is seen at 1.25 s, the read ends at 1.5 s
    assert finished == [1_500 * MS] and clock.monotonic_ns() == 1_500 * MS


def test_the_system_clock_is_the_hosts() -> None:
    ran: list[bool] = []
    thread = SYSTEM_CLOCK.thread(lambda: ran.append(True), "plain")
    assert thread.daemon and not thread.is_alive()
    thread.start()
    SYSTEM_CLOCK.join(thread, 10.0)
    assert ran == [True] and not thread.is_alive()
    a = SYSTEM_CLOCK.monotonic_ns()
    SYSTEM_CLOCK.sleep(0.001)
    assert SYSTEM_CLOCK.monotonic_ns() > a


def _run_once() -> tuple[np.ndarray, np.ndarray, dict[int, float | None]]:
    clock = VirtualClock()
    sim = SimulatedNvmlBackend(clock=clock, n_gpus=2)  # the demo trace; H200 counter-read cost
    with PowerMonitor([0, 1], 0.02, sim) as mon:
        mon.measure_idle(0.5)
        mon.begin_window("w")
        clock.sleep(1.3)
        window = mon.end_window("w")
    s = mon.samples()
    return s.monotonic_ns, s.values, window.energy_j


def test_a_monitor_run_on_virtual_time_is_the_same_run_every_time() -> None:
    first, second = _run_once(), _run_once()
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1], equal_nan=True)
    assert first[2] == second[2] and all(j is not None and j > 0 for j in first[2].values())
    # 20 ms samples over ~2 s of virtual time (idle baseline, window, the alignment waits): none skipped;
    # the sampler sees the stop at its next tick, so the last one, taken on the way out, is on it too.
    assert np.all(np.diff(first[0]) == 20 * MS) and len(first[0]) > 100

"""Clocks: the time source the monitor reads and waits on, and a remote clock's offset to ours.

`Clock` is what the sampler, the energy windows and the simulated backend take time from: the
system's (`SYSTEM_CLOCK`), or a `VirtualClock` for tests, on which seconds pass only when the test's
own thread sleeps, so a 2 s window takes milliseconds and runs the same way on an idle or a busy host.

A remote clock's offset (Cristian's method): each round reads our epoch clock (t0), the remote clock
(r), ours again (t1). The remote read happened somewhere in [t0, t1], so the true offset r - t lies in
[r - t1, r - t0]: the estimate is the middle, r - (t0 + t1) / 2, and its bound half the round trip. Of
several rounds the one with the shortest round trip is kept (the tightest bound); a slow round says
nothing wrong, only less. No assumption about the network beyond "the reply came after the request".
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_HASH_CHUNK = bytes(256 * 1024)  # hashing it takes ~0.1-0.2 ms with the GIL released
_POLL_S = 0.005  # how often a virtual sleeper looks at its stop event (real seconds)


class Clock(Protocol):
    """A time source with its own way to wait."""

    def time_ns(self) -> int: ...  # epoch ns
    def monotonic_ns(self) -> int: ...
    def sleep(self, seconds: float) -> None: ...

    def busy(self, seconds: float) -> None:
        """Spend `seconds` of CPU in C code that lets other threads run (a ctypes call that spins)."""
        ...

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """A daemon thread (not started) that runs `target` on this clock."""
        ...

    def join(self, thread: threading.Thread, seconds: float) -> None:
        """Wait up to `seconds` for `thread` to end."""
        ...


class SystemClock:
    """The host's clocks (time.time_ns, time.monotonic_ns) and real waits."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def busy(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            hashlib.sha256(_HASH_CHUNK)

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        return threading.Thread(target=target, name=name, daemon=True)

    def join(self, thread: threading.Thread, seconds: float) -> None:
        thread.join(seconds)


SYSTEM_CLOCK = SystemClock()


class VirtualClock:
    """Time that passes only when the driving thread sleeps: discrete-event time for tests.

    Threads made by `thread()` are its workers (the sampler): their sleeps wait for virtual time to
    reach their wake-up. Any other thread that sleeps drives it: time jumps from one worker's wake-up
    to the next up to the end of the sleep, and at each stop the driver waits until every worker has
    run and gone back to sleep. Reads and work cost no time (`busy` sleeps instead). So what the
    monitor does at a given virtual instant does not depend on the host's speed, only on the order
    of events. One driving thread at a time.
    """

    def __init__(self, start_s: float = 1000.0, epoch_s: float = 1_800_000_000.0) -> None:
        self._now_ns = round(start_s * 1e9)
        self._epoch_minus_mono_ns = round(epoch_s * 1e9) - self._now_ns
        self._cond = threading.Condition()
        self._workers: set[threading.Thread] = set()
        self._wakes: dict[threading.Thread, int] = {}  # a sleeping worker's wake-up

    def time_ns(self) -> int:
        return self._now_ns + self._epoch_minus_mono_ns

    def monotonic_ns(self) -> int:
        return self._now_ns

    def sleep(self, seconds: float) -> None:
        self._wait(seconds, lambda: False)

    def busy(self, seconds: float) -> None:
        self._wait(seconds, lambda: False)

    def join(self, thread: threading.Thread, seconds: float) -> None:
        """Drive time (the worker may still read, and reads take time) until `thread` has ended."""
        if thread in self._workers:
            self._wait(seconds, lambda: thread not in self._workers)  # its target has returned
        thread.join(seconds)

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def run() -> None:
            try:
                target()
            finally:
                with self._cond:
                    self._workers.discard(worker)
                    self._cond.notify_all()

        worker = threading.Thread(target=run, name=name, daemon=True)
        with self._cond:
            self._workers.add(worker)  # from now on, time waits for it (start it right away)
        return worker

    def _wait(self, seconds: float, done: Callable[[], bool]) -> bool:
        """Sleep `seconds` of virtual time or until `done()`; whether `done()`."""
        me = threading.current_thread()
        with self._cond:
            wake = self._now_ns + max(0, round(seconds * 1e9))
            if me in self._workers:  # a worker: wait for the driver to move time
                self._wakes[me] = wake
                self._cond.notify_all()
                try:
                    while self._now_ns < wake and not done():
                        self._cond.wait(_POLL_S)
                finally:
                    del self._wakes[me]
                return done()
            while True:  # the driver: move time, one worker wake-up at a time
                self._settle()
                if done():
                    return True
                if self._now_ns >= wake:
                    return False
                self._now_ns = min([wake, *self._wakes.values()])
                self._cond.notify_all()

    def _settle(self) -> None:
        """Wait (holding the condition) until every worker sleeps past now."""
        while any(self._runnable(w) for w in self._workers):
            self._cond.wait(_POLL_S)

    def _runnable(self, worker: threading.Thread) -> bool:
        wake = self._wakes.get(worker)
        return wake is None or wake <= self._now_ns


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """remote clock - our clock, in ns; the truth lies within offset_ns +- bound_ns."""

    offset_ns: int
    bound_ns: int
    rtt_ns: int
    rounds: int

    def to_local(self, remote_epoch_ns: int) -> int:
        """A remote timestamp on our clock."""
        return remote_epoch_ns - self.offset_ns


def estimate_offset(rounds: list[tuple[int, int, int]]) -> ClockOffset:
    """The offset from rounds of (our t0, remote reading, our t1), all epoch ns."""
    if not rounds:
        raise ValueError("no clock rounds to estimate an offset from")
    bad = [r for r in rounds if r[2] < r[0]]
    if bad:
        raise ValueError(f"a round ends before it starts (our clock went back): {bad[0]}")
    t0, remote, t1 = min(rounds, key=lambda r: r[2] - r[0])
    rtt = t1 - t0
    return ClockOffset(
        offset_ns=remote - (t0 + t1) // 2, bound_ns=(rtt + 1) // 2, rtt_ns=rtt, rounds=len(rounds)
    )


def measure_offset(read_remote_ns: Callable[[], int], rounds: int = 8) -> ClockOffset:
    """Read the remote clock `rounds` times through `read_remote_ns` (a blocking call that returns the
    remote epoch ns) and estimate its offset to `time.time_ns()`."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    samples = []
    for _ in range(rounds):
        t0 = time.time_ns()
        remote = int(read_remote_ns())
        samples.append((t0, remote, time.time_ns()))
    return estimate_offset(samples)

"""A remote clock's offset to ours, bounded by the round trip that read it (Cristian's method).

Each round reads our epoch clock (t0), the remote clock (r), ours again (t1). The remote read happened
somewhere in [t0, t1], so the true offset r - t lies in [r - t1, r - t0]: the estimate is the middle,
r - (t0 + t1) / 2, and its bound half the round trip. Of several rounds the one with the shortest round
trip is kept (the tightest bound); a slow round says nothing wrong, only less. No assumption about the
network beyond "the reply came after the request".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


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

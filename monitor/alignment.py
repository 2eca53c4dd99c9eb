"""Window boundaries on the energy counter's steps.

The NVML total-energy counter only moves on its update period (about 100 ms). A boundary read at an
arbitrary moment therefore stands for energy up to the last step, not up to the read. Polling the
counter until it steps and stamping the boundary at that step makes the counter delta and the window's
duration cover the same interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monitor.clock import Clock


@dataclass
class CounterRead:
    """One read of a GPU's energy counter (mJ) and when it ran; `value` None when it failed."""

    value: int | None
    before_ns: int
    after_ns: int
    error: str | None = None
    unsupported: bool = False


@dataclass
class Boundary:
    """One GPU's side of a window: counter value, the time it stands for, and that time's uncertainty."""

    energy_mj: int | None
    mono_ns: int
    read_before_ns: int
    read_after_ns: int
    uncertainty_ns: int | None  # None: not aligned to a counter step
    instant_w: float | None = None
    note: str | None = None
    error: str | None = None

    @classmethod
    def unaligned(cls, r: CounterRead, note: str | None) -> Boundary:
        mid = (r.before_ns + r.after_ns) // 2
        return cls(r.value, mid, r.before_ns, r.after_ns, None, note=note, error=r.error)


@dataclass
class AlignSettings:
    """How a boundary waits for a step (`timeout_s`), polls the counter (at most every `poll_s`), and how
    much time besides the reads themselves a step's bracket may hold (`max_gap_s`)."""

    timeout_s: float = 0.5
    poll_s: float = 0.001
    max_gap_s: float = 0.004


def read_boundaries(
    read_counter: Callable[[int], CounterRead],
    n_gpus: int,
    align: bool,
    settings: AlignSettings,
    clock: Clock,
) -> dict[int, Boundary]:
    """Read every GPU's counter now. With `align`, poll until it steps (waiting on `clock`) and stamp the
    step's time, to within half the gap between the two reads that bracket it.

    A bracket can be no narrower than the counter reads inside it (milliseconds each on some GPUs);
    when the time in it *outside* those reads exceeds `max_gap_s` (a busy host preempted us), the step
    is kept only as a fallback and the next one is tried."""
    spent_ns = 0  # time spent inside counter reads so far

    def timed_read(g: int) -> tuple[CounterRead, int]:
        nonlocal spent_ns
        before = spent_ns
        r = read_counter(g)
        spent_ns += r.after_ns - r.before_ns
        return r, before

    first = {g: timed_read(g) for g in range(n_gpus)}
    out: dict[int, Boundary] = {}
    prev: dict[int, tuple[CounterRead, int]] = {}
    best: dict[int, Boundary] = {}
    for g, (r, spent_before) in first.items():
        if r.value is None or not align:
            out[g] = Boundary.unaligned(
                r, None if r.value is None else "boundary not aligned to a counter step"
            )
        else:
            prev[g] = (r, spent_before)
    poll_ns, max_gap_ns = int(settings.poll_s * 1e9), int(settings.max_gap_s * 1e9)
    deadline = clock.monotonic_ns() + int(settings.timeout_s * 1e9)
    round_ns = 0
    while prev:
        if clock.monotonic_ns() >= deadline:
            for g in prev:
                if g in best:
                    b = best[g]
                    b.note = f"counter step bracketed only to +-{b.uncertainty_ns / 1e6:.1f} ms (busy host?)"
                    out[g] = b
                else:
                    out[g] = Boundary.unaligned(
                        first[g][0],
                        f"counter did not step within {settings.timeout_s} s; boundary uncertain by up to "
                        "one counter update period",
                    )
            break
        if round_ns < poll_ns:  # slow reads pace the polling themselves
            clock.sleep((poll_ns - round_ns) / 1e9)
        round_start = clock.monotonic_ns()
        for g in list(prev):
            (p, p_spent), (r, r_spent) = prev[g], timed_read(g)
            if r.value is None:
                out[g] = Boundary.unaligned(r, None)
                del prev[g]
                continue
            if r.value != p.value:  # it stepped between the two reads
                gap = r.after_ns - p.before_ns
                cand = Boundary(r.value, (p.before_ns + r.after_ns) // 2, r.before_ns, r.after_ns, gap // 2)
                if gap - (spent_ns - p_spent) <= max_gap_ns:
                    out[g] = cand
                    del prev[g]
                    continue
                if g not in best or cand.uncertainty_ns < best[g].uncertainty_ns:  # type: ignore[operator]
                    best[g] = cand
            prev[g] = (r, r_spent)
        round_ns = clock.monotonic_ns() - round_start
    return out

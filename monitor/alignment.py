"""Window boundaries on the energy counter's steps.

The NVML total-energy counter only moves on its update period (about 100 ms). A boundary read at an
arbitrary moment therefore stands for energy up to the last step, not up to the read. Polling the
counter until it steps and stamping the boundary at that step makes the counter delta and the window's
duration cover the same interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


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
    """How a boundary waits for (`timeout_s`), polls (`poll_s`) and brackets (`max_gap_s`) a step."""

    timeout_s: float = 0.5
    poll_s: float = 0.001
    max_gap_s: float = 0.004


def read_boundaries(
    read_counter: Callable[[int], CounterRead], n_gpus: int, align: bool, settings: AlignSettings
) -> dict[int, Boundary]:
    """Read every GPU's counter now. With `align`, poll until it steps and stamp the step's time, to
    within half the gap between the two reads that bracket it (retried on the next step while the gap
    exceeds `max_gap_s`, e.g. on a busy host)."""
    first = {g: read_counter(g) for g in range(n_gpus)}
    out: dict[int, Boundary] = {}
    prev: dict[int, CounterRead] = {}
    best: dict[int, Boundary] = {}
    for g, r in first.items():
        if r.value is None or not align:
            out[g] = Boundary.unaligned(
                r, None if r.value is None else "boundary not aligned to a counter step"
            )
        else:
            prev[g] = r
    max_gap_ns = int(settings.max_gap_s * 1e9)
    deadline = time.monotonic_ns() + int(settings.timeout_s * 1e9)
    while prev:
        if time.monotonic_ns() >= deadline:
            for g in prev:
                if g in best:
                    b = best[g]
                    b.note = f"counter step bracketed only to +-{b.uncertainty_ns / 1e6:.1f} ms (busy host?)"
                    out[g] = b
                else:
                    out[g] = Boundary.unaligned(
                        first[g],
                        f"counter did not step within {settings.timeout_s} s; boundary uncertain by up to "
                        "one counter update period",
                    )
            break
        time.sleep(settings.poll_s)
        for g in list(prev):
            p, r = prev[g], read_counter(g)
            if r.value is None:
                out[g] = Boundary.unaligned(r, None)
                del prev[g]
                continue
            if r.value != p.value:  # it stepped between the two reads
                gap = r.after_ns - p.before_ns
                cand = Boundary(r.value, (p.before_ns + r.after_ns) // 2, r.before_ns, r.after_ns, gap // 2)
                if gap <= max_gap_ns:
                    out[g] = cand
                    del prev[g]
                    continue
                if g not in best or cand.uncertainty_ns < best[g].uncertainty_ns:  # type: ignore[operator]
                    best[g] = cand
            prev[g] = r
    return out

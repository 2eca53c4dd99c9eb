"""When the sampling thread reads the energy counter (window edges read it on their own, in windows.py).

The counter only steps about every 100 ms, window energy needs it only at the window's edges, and one
read costs milliseconds of CPU on some GPUs (3-4 ms on an H200). So the sampler reads it at the first
and the last sample and, in between, every `period_s`: often enough that no wrap of the counter can hide
between two reads, and, unless given, as often as a CPU budget of COUNTER_CPU_SHARE of a core allows
(every 0.1 s where a read takes microseconds, every few seconds on an H200). The GPUs' reads are spread
over the period so that no sample carries more than one of them when the period allows.
"""

from __future__ import annotations

import math

COUNTER_UPDATE_S = 0.1  # the NVML energy counter steps about this often
COUNTER_CPU_SHARE = 0.002  # a chosen period keeps the sampler's counter reads at 0.2% of a core
FALLBACK_PERIOD_S = 1.0  # when no first read tells what a read costs


def wrap_safe_period_s(wrap_mj: int, max_power_w: float) -> float:
    """Longest period between counter reads that cannot miss a wrap, with a 2x margin on power and time."""
    return wrap_mj / (2 * max_power_w * 1000) / 2


class CounterSchedule:
    """Which samples read which GPU's energy counter.

    `period_s`: seconds between a GPU's reads (>= COUNTER_UPDATE_S), or None to choose it from what the
    first reads cost; either way capped at `max_period_s`.
    """

    def __init__(
        self, n_gpus: int, interval_s: float, period_s: float | None, max_period_s: float = math.inf
    ):
        if period_s is not None and not period_s >= COUNTER_UPDATE_S:
            raise ValueError(
                f"counter_read_every_s={period_s} is below the counter's ~{COUNTER_UPDATE_S} s update "
                "period; reading it more often only costs CPU (window edges are read on their own)"
            )
        self.n_gpus = n_gpus
        self.requested_s = period_s
        self.max_period_s = max(COUNTER_UPDATE_S, max_period_s)
        self.period_s: float | None = None if period_s is None else min(period_s, self.max_period_s)
        self._slack_ns = int(interval_s * 1e9) // 2  # a sample within half an interval of a due read takes it
        self._next_ns: list[int] | None = None  # None until the first sample

    def due(self, g: int, now_ns: int, final: bool = False) -> bool:
        """Whether the sample taken at `now_ns` reads GPU position g's counter (`final`: the last sample)."""
        return final or self._next_ns is None or now_ns >= self._next_ns[g] - self._slack_ns

    def after_sample(self, now_ns: int, read_ns: list[int | None]) -> None:
        """Record a sample's counter reads (per GPU: how long the read took, None if not read)."""
        if self._next_ns is None:
            if self.period_s is None:
                costs = [x for x in read_ns if x is not None]
                chosen = sum(costs) / 1e9 / COUNTER_CPU_SHARE if costs else FALLBACK_PERIOD_S
                self.period_s = min(self.max_period_s, max(COUNTER_UPDATE_S, chosen))
            period_ns = int(self.period_s * 1e9)
            self._next_ns = [now_ns + period_ns * (g + 1) // self.n_gpus for g in range(self.n_gpus)]
            return
        period_ns = int((self.period_s or FALLBACK_PERIOD_S) * 1e9)
        for g, took in enumerate(read_ns):
            if took is not None:  # after a stall, restart from now rather than read in a burst
                self._next_ns[g] = max(self._next_ns[g] + period_ns, now_ns + period_ns // 2)

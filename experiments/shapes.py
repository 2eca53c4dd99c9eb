"""Workload shapes: the named workloads that campaigns run and the planner predicts, in one place.

A shape is either synthetic lengths (`input_len` -> `output_len` tokens, Poisson at each rate) or a trace
replay (`dataset`: the trace's own gaps rescaled to each rate's mean, its lengths, its prefix reuse; a
slice of a public trace kept in data/traces/). Each rate has its own seed (fresh prompts: no point is
served from an earlier point's prefix cache), and `requests(rate, floor)` is how many a point sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"


@dataclass(frozen=True)
class Shape:
    name: str
    input_len: str  # tokens: N or MIN:MAX ("" for a trace)
    output_len: str
    rates: tuple[float, ...]  # req/s (a trace: the mean it is rescaled to)
    seed_base: int  # distinct per shape: a short prompt must not be a prefix of a longer one
    # Arrivals last at least this long (more requests at high rates): long requests need a steady state,
    # i.e. many more requests than the rate x E2E that are in flight at once.
    min_arrival_s: float = 0.0
    dataset: str | None = None  # a trace replay: the trace file (relative to the repository)
    arrival_s: float | None = None  # a trace too long to send whole: arrivals last this long at every rate
    drain_s: float = 10.0  # after the last arrival, what the last requests take (the campaign's estimate)

    def requests(self, rate: float, floor: int) -> int:
        if self.arrival_s is not None:
            return math.ceil(rate * self.arrival_s)
        return max(floor, math.ceil(rate * self.min_arrival_s))

    def seed(self, rate: float) -> int:
        """Fresh prompts per rate: the shape's own rates keep their seeds, any other rate gets its own."""
        if rate in self.rates:
            return self.seed_base + self.rates.index(rate)
        return self.seed_base + 100 + round(rate * 10)

    @property
    def trace(self) -> bool:
        return self.dataset is not None


SHAPES = {
    "prefill-heavy": Shape("prefill-heavy", "2048", "256", (4, 8, 12, 16, 20, 24), 1000, drain_s=7.7),
    # 1024 tokens take 7-15 s: 200 requests never reach a steady state past ~8 req/s (results/h200x2/
    # frontier/decode-heavy-short), so arrivals last >= 45 s here, 3 E2Es of ~15 s (up to 1440 requests
    # at 32 req/s; experiments/timing_checks.py warns about a run that still falls short).
    "decode-heavy": Shape(
        "decode-heavy", "512", "1024", (4, 8, 16, 24, 32), 2000, min_arrival_s=45.0, drain_s=30.7
    ),
    "mixed": Shape("mixed", "128:4096", "32:1024", (2, 4, 8, 12, 16), 3000, drain_s=30.7),
    "cpu-smoke": Shape("cpu-smoke", "200", "8", (2, 4), 4000, drain_s=0.2),
    # Prefill alone (one output token) on a plain instance: does it hold overlapping prefills as the
    # 1P1D prefill instance does (results/h200x2/frontier/README.md, the prefill-time puzzle)?
    "prefill-only": Shape("prefill-only", "2048", "1", (4, 8, 12, 16), 5000, drain_s=0.03),
    # Real traffic (../shared/traces/README.md; slices in data/traces/README.md). Azure conversation: mean
    # 1014 -> 247 tokens over its first 1000 rows, bursty; one H200 (8B) saturates near 20 req/s.
    "azure-conv": Shape(
        "azure-conv", "", "", (5, 10, 15, 20, 25), 6000, dataset="data/traces/azure_conv_2023-head3000.csv"
    ),
    # Mooncake conversation: ~11k-token prompts (clipped to the served context), multi-turn prefix reuse;
    # one H200 (8B) saturates near 2 req/s, so a point sends 60 s of arrivals (>= 3 E2Es below saturation).
    "mooncake-conv": Shape(
        "mooncake-conv",
        "",
        "",
        (0.5, 1.0, 1.5, 2.0, 2.5),
        7000,
        dataset="data/traces/mooncake_conversation-head1500.jsonl",
        arrival_s=60.0,
        drain_s=20.0,
    ),
}

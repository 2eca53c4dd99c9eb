"""Request arrival processes: open loop (Poisson, gamma, constant rate), closed loop, trace replay.

Open-loop offsets follow vLLM's `benchmarks/serve.py` `get_request`: gaps are gamma distributed with
shape = burstiness and scale = 1 / (rate * burstiness) (mean 1/rate, CV 1/sqrt(burstiness)); Poisson is
burstiness 1 (exponential gaps); offsets are the cumulative sum of the gaps, so the first request goes at
the first gap, not at 0. Unlike vLLM, offsets are not rescaled to end exactly at n/rate unless asked
(`normalize=True`), so the process keeps its true statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from experiments.workloads import RequestSpec

OpenLoopKind = Literal["poisson", "gamma", "constant"]
ArrivalKind = Literal["poisson", "gamma", "constant", "closed", "trace"]
OPEN_LOOP_KINDS: tuple[str, ...] = ("poisson", "gamma", "constant")
ARRIVAL_KINDS: tuple[str, ...] = (*OPEN_LOOP_KINDS, "closed", "trace")


def _check_rate(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or math.isnan(rate) or rate <= 0:
        raise ValueError(f"request rate must be a positive number of requests/s (or inf), got {rate!r}")


def _check_burstiness(burstiness: float, kind: str) -> None:
    if isinstance(burstiness, bool) or not isinstance(burstiness, int | float):
        raise ValueError(f"burstiness must be a positive number, got {burstiness!r}")
    if math.isnan(burstiness) or burstiness <= 0:
        raise ValueError(f"burstiness must be a positive number, got {burstiness!r}")
    if burstiness != 1.0 and kind != "gamma":
        raise ValueError(f"burstiness {burstiness} applies to kind 'gamma' only, not {kind!r}")


def arrival_offsets(
    n: int,
    rate: float,
    kind: OpenLoopKind | str = "poisson",
    burstiness: float = 1.0,
    seed: int = 0,
    normalize: bool = False,
) -> np.ndarray:
    """Send offsets in seconds from the start for `n` requests at `rate` requests/s.

    `kind`: "poisson" (exponential gaps), "gamma" (shape `burstiness`; < 1 burstier, > 1 smoother,
    inf = constant) or "constant" (gaps of exactly 1/rate). `rate` = inf sends everything at 0.
    `normalize=True` rescales the offsets so the last one is n/rate, as vLLM does.
    """
    if kind not in OPEN_LOOP_KINDS:
        raise ValueError(f"unknown arrival kind {kind!r}; use one of {', '.join(OPEN_LOOP_KINDS)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"number of requests must be an integer >= 0, got {n!r}")
    _check_rate(rate)
    _check_burstiness(burstiness, kind)
    if n == 0:
        return np.zeros(0)
    if math.isinf(rate):
        return np.zeros(n)
    if kind == "constant" or math.isinf(burstiness):
        gaps = np.full(n, 1.0 / rate)
    else:
        rng = np.random.default_rng(seed)
        gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    offsets = np.cumsum(gaps)
    if normalize and offsets[-1] > 0:
        offsets *= (n / rate) / offsets[-1]
    return offsets


@dataclass(frozen=True)
class ArrivalConfig:
    """How requests arrive.

    kind: "poisson" | "gamma" | "constant" (open loop at `rate` req/s), "closed" (`concurrency` users,
    each sending its next request when the previous one ends) or "trace" (the specs' `arrival_s`).
    max_concurrency caps requests in flight (open loop and trace); `warmup` warm-up requests are sent
    before the measured ones and excluded from metrics.
    """

    kind: ArrivalKind
    rate: float | None = None
    burstiness: float = 1.0
    concurrency: int | None = None
    max_concurrency: int | None = None
    warmup: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ARRIVAL_KINDS:
            raise ValueError(f"unknown arrival kind {self.kind!r}; use one of {', '.join(ARRIVAL_KINDS)}")
        if self.kind in OPEN_LOOP_KINDS:
            if self.rate is None:
                raise ValueError(f"arrival kind {self.kind!r} needs a request rate (requests/s, or inf)")
            _check_rate(self.rate)
        elif self.rate is not None:
            raise ValueError(f"arrival kind {self.kind!r} takes no request rate; drop rate={self.rate}")
        _check_burstiness(self.burstiness, self.kind)
        if self.kind == "closed":
            if not _is_count(self.concurrency, 1):
                raise ValueError(
                    f"closed-loop arrivals need concurrency >= 1 users, got {self.concurrency!r}"
                )
        elif self.concurrency is not None:
            raise ValueError(
                f"concurrency is for kind 'closed'; use max_concurrency to cap {self.kind!r} arrivals"
            )
        if self.max_concurrency is not None and not _is_count(self.max_concurrency, 1):
            raise ValueError(f"max_concurrency must be an integer >= 1 or None, got {self.max_concurrency!r}")
        if not _is_count(self.warmup, 0):
            raise ValueError(f"warmup must be an integer >= 0 (number of requests), got {self.warmup!r}")
        if not _is_count(self.seed, None):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")


def _is_count(value: Any, minimum: int | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return False
    return minimum is None or value >= minimum


def schedule(specs: Sequence[RequestSpec], cfg: ArrivalConfig) -> list[float | None]:
    """Send offset in seconds for each spec; None means "send when a closed-loop user slot frees".

    Covers the given (measured) specs only; warm-up requests are sent by the client before offset 0.
    """
    if cfg.kind == "closed":
        return [None] * len(specs)
    if cfg.kind == "trace":
        out: list[float | None] = []
        for spec in specs:
            if spec.arrival_s is None:
                raise ValueError(
                    f"request {spec.index} has no arrival_s; trace arrivals need specs from trace_workload"
                )
            out.append(float(spec.arrival_s))
        return out
    assert cfg.rate is not None
    return arrival_offsets(len(specs), cfg.rate, cfg.kind, cfg.burstiness, cfg.seed).tolist()

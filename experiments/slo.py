"""Service-level objectives: "ttft=200,tpot=50,e2e=2000" (milliseconds), their keys, grids of them
("ttft=250,500 tpot=10,25": every combination one SLO), and the one test of a request against them
(`slo_met`), which the runner's goodput, the frontier and the planner share.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

SLO_KEYS: tuple[str, ...] = ("ttft", "tpot", "e2e")
# The per-request metric each SLO key bounds (the names of experiments.schema.Record's fields).
SLO_METRIC: dict[str, str] = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "e2el_ms"}
_ALIASES = {"e2el": "e2e"}
_SEPARATORS = re.compile(r"[,\s]+")
_SPACED_EQUALS = re.compile(r"\s*([=:])\s*")
_GRID_PARTS = re.compile(r"[;:\s]+(?=[A-Za-z])")  # between one key's bounds and the next key
# The frontier campaign's grid: TTFT bound x TPOT bound (ms); compare_performance.py's and the planner's.
DEFAULT_SLO_GRID: dict[str, tuple[float, ...]] = {"ttft": (250, 500, 1000, 2000), "tpot": (10, 15, 25, 50)}


def parse_slo(text: str) -> dict[str, float]:
    """Parse SLOs in ms, e.g. "ttft=200,tpot=50,e2e=2000"; any subset of ttft, tpot, e2e (alias e2el).

    Pairs are separated by commas or spaces and written key=value (vLLM's key:value is accepted too).
    Raises ValueError naming the bad part for an unknown key, a non-number, a value <= 0, a duplicate
    key or an empty string.
    """
    parts = [p for p in _SEPARATORS.split(_SPACED_EQUALS.sub(r"\1", text.strip())) if p]
    if not parts:
        raise ValueError('empty SLO; write e.g. "ttft=200,tpot=50,e2e=2000" (milliseconds)')
    slo: dict[str, float] = {}
    for part in parts:
        key, sep, raw = part.partition("=")
        if not sep:
            key, sep, raw = part.partition(":")
        if not sep:
            raise ValueError(f"bad SLO part {part!r}: write key=milliseconds, e.g. ttft=200")
        name = _ALIASES.get(key.strip().lower(), key.strip().lower())
        if name not in SLO_KEYS:
            raise ValueError(f"unknown SLO {key!r} in {part!r}; use ttft, tpot or e2e")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"SLO {part!r}: {raw!r} is not a number of milliseconds") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"SLO {part!r}: the value must be a positive finite number of milliseconds")
        if name in slo:
            raise ValueError(f"SLO {name} given twice (at {part!r})")
        slo[name] = value
    return slo


def parse_slo_grid(text: str) -> dict[str, tuple[float, ...]]:
    """SLO bounds per key (ms), every combination one SLO: "ttft=250,500,1000 tpot=10,25". Keys are apart
    by spaces, ';' or ':' ("ttft=250,500:tpot=10,25" reads the same), each given once (ttft, tpot, e2e;
    alias e2el); bounds come back ascending, without repeats. Raises ValueError naming the bad part."""
    grid: dict[str, tuple[float, ...]] = {}
    for part in (p for p in _GRID_PARTS.split(text.strip()) if p):
        key, sep, values = part.partition("=")
        name = _ALIASES.get(key.strip().lower(), key.strip().lower())
        if not sep or name not in SLO_KEYS or name in grid:
            raise ValueError(
                f"bad SLO grid part {part!r}: write e.g. ttft=250,500,1000 tpot=10,25 (ms), each key once"
            )
        try:
            bounds = [float(v) for v in _SEPARATORS.split(values.strip()) if v]
        except ValueError:
            raise ValueError(f"SLO grid {part!r}: the bounds must be numbers of milliseconds") from None
        if not bounds or any(not math.isfinite(b) or b <= 0 for b in bounds):
            raise ValueError(f"SLO grid {part!r}: give one or more positive bounds in milliseconds")
        grid[name] = tuple(sorted(set(bounds)))
    if not grid:
        raise ValueError("empty SLO grid; write e.g. ttft=250,500,1000 tpot=10,25 (ms)")
    return grid


def _key(key: str) -> str:
    name = _ALIASES.get(key, key)
    if name not in SLO_KEYS:
        raise ValueError(f"unknown SLO {key!r}; use ttft, tpot or e2e (milliseconds)")
    return name


def check_slo(slo: Mapping[str, float]) -> None:
    """Raise ValueError for an unknown key or a limit that is not a positive number of ms."""
    for key, value in slo.items():
        _key(key)
        if not value > 0:
            raise ValueError(f"SLO {key} must be a positive number of milliseconds, got {value!r}")


def slo_met(metrics: Mapping[str, np.ndarray], slo: Mapping[str, float]) -> np.ndarray:
    """Per request: whether it meets every limit in `slo` (ms). `metrics` holds one array per metric the
    SLO bounds (`SLO_METRIC`: ttft_ms, tpot_ms, e2el_ms), one entry per request. A NaN TPOT (one output
    token, no TPOT) passes the TPOT limit, as in vLLM; any other NaN misses, so a failed request is
    given a NaN TTFT. With no limit, every request meets it."""
    n = len(next(iter(metrics.values()))) if metrics else 0
    ok = np.ones(n, dtype=bool)
    for key, limit in slo.items():
        name = _key(key)
        values = np.asarray(metrics[SLO_METRIC[name]], dtype=float)
        if name == "tpot":
            values = np.nan_to_num(values, nan=0.0)
        with np.errstate(invalid="ignore"):
            ok &= values <= limit
    return ok

"""Service-level objectives for goodput: "ttft=200,tpot=50,e2e=2000" (milliseconds)."""

from __future__ import annotations

import math
import re

SLO_KEYS: tuple[str, ...] = ("ttft", "tpot", "e2e")
_ALIASES = {"e2el": "e2e"}
_SEPARATORS = re.compile(r"[,\s]+")
_SPACED_EQUALS = re.compile(r"\s*([=:])\s*")


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

"""What the benchmark scripts share: a one-core measurement."""

from __future__ import annotations

import os


def pin_one_core() -> str:
    """Pin this process to its lowest allowed core (targets are per core); says what it did."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity here)"

"""Warnings as data: what limits what a run shows, with a code to filter on, the value observed and the
threshold it crossed, and the sentence a reader gets (as GuideLLM keeps its warnings)."""

from __future__ import annotations

from dataclasses import dataclass

# The codes the testbed writes, and what each one's `observed` and `threshold` hold.
COALESCED_CHUNKS = "coalesced_chunks"  # share of text chunks read with the one before (0-1)
SEND_LATENESS = "send_lateness"  # send-lateness p99 (ms)
NOT_STEADY = "not_steady"  # arrival window in mean E2E latencies
PREFIX_CACHE = "prefix_cache"  # share of prompt tokens served from one server's prefix cache (0-1)
RETRIED = "retried"  # measured requests sent again after their connection died unanswered (count)
PROXY_RETRIED = "proxy_retried"  # measured requests a leg of which the proxy retried elsewhere (count)
ATTRIBUTION = "attribution"  # the run's energy could not be attributed to requests (no values)
UNCLASSIFIED = "unclassified"  # a free-text warning from a result written before codes existed
CODES = (
    COALESCED_CHUNKS,
    SEND_LATENESS,
    NOT_STEADY,
    PREFIX_CACHE,
    RETRIED,
    PROXY_RETRIED,
    ATTRIBUTION,
    UNCLASSIFIED,
)

# How the free-text warnings of older results start (or what they contain), to give them their code.
_OLD_TEXT = (
    ("not a steady state", NOT_STEADY),
    ("send lateness p99", SEND_LATENESS),
    ("arrived in the same network read", COALESCED_CHUNKS),
    ("from its local prefix cache", PREFIX_CACHE),
    ("energy not attributed to requests", ATTRIBUTION),
)


@dataclass(slots=True, kw_only=True)
class RunWarning:
    """One warning: `code` (one of CODES), `message` for a reader, `observed` and `threshold` in the
    unit the code names (None where a result predates them)."""

    code: str
    message: str
    observed: float | None = None
    threshold: float | None = None

    def __str__(self) -> str:
        return self.message


def classify(text: str) -> RunWarning:
    """An older result's free-text warning as a RunWarning (its code from the text; no values)."""
    code = next((c for marker, c in _OLD_TEXT if marker in text), UNCLASSIFIED)
    return RunWarning(code=code, message=text)

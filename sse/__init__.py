"""The server-sent-event lines this testbed adds to OpenAI streams, defined once.

The lowest layer: it imports nothing, and the proxy (which writes them), the fake upstream (which plays
the proxy in tests) and the streaming client (experiments.client, which reads them) all import it.
"""

from __future__ import annotations

# The proxy's stage timing of one request: the SSE comment `: proxy-timing {json}` right before
# `data: [DONE]` (clients that don't know it skip it, as SSE comments are skipped).
TIMING_COMMENT_PREFIX = b": proxy-timing "

__all__ = ["TIMING_COMMENT_PREFIX"]

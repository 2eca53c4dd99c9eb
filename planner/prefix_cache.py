"""vLLM's automatic prefix cache as the simulator sees it: an LRU of whole prompt blocks named by their
prefix (experiments.traces.prefix_chains), per instance.

A request admitted for prefill looks its blocks up in order; the leading run found is served from the
cache (vLLM computes at least the prompt's last token), and all its blocks become the most recently used.
The capacity is the instance's KV pool: vLLM keeps a finished request's blocks cached until it needs the
room, evicting the least recently used first. Not modeled: blocks of running requests cannot be evicted
(under load the cache holds less), and the granularity is the trace's block (Mooncake: 512 tokens), not
vLLM's (16 on a GPU).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    """An LRU of `capacity_tokens` // `block_tokens` prompt blocks."""

    __slots__ = ("block", "capacity", "hit_tokens", "lru", "query_tokens")

    def __init__(self, capacity_tokens: int, block_tokens: int) -> None:
        if block_tokens < 1:
            raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
        self.block = block_tokens
        self.capacity = max(1, capacity_tokens // block_tokens)
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.hit_tokens = 0
        self.query_tokens = 0

    def admit(self, chain: Sequence[int], prompt_tokens: int) -> int:
        """Prompt tokens served from the cache for a request with these blocks; caches them all."""
        lru = self.lru
        hits = 0
        for node in chain:
            if node not in lru:
                break
            lru.move_to_end(node)
            hits += 1
        for node in chain[hits:]:  # stored, or made the most recent (a block left behind an evicted one)
            lru[node] = None
            lru.move_to_end(node)
        while len(lru) > self.capacity:
            lru.popitem(last=False)
        cached = max(0, min(hits * self.block, prompt_tokens - 1))
        self.hit_tokens += cached
        self.query_tokens += prompt_tokens
        return cached

"""An approximate prefix index: which instance the proxy sent which prompt prefix to.

As llm-d's approximate prefix-cache scorer does, the proxy does not ask vLLM what it holds: it splits
each prompt into blocks (BLOCK_CHARS characters of text, or BLOCK_TOKENS token ids), chains their
hashes (block i's key hashes block i with key i-1, so a key stands for the whole prefix up to it), and
remembers the instances each key was sent to, least recently used first out beyond `capacity` keys.
An instance's score for a new prompt is the number of its leading blocks found there: the prefix that
instance most likely still holds in its prefix cache.
"""

from __future__ import annotations

from collections import OrderedDict

BLOCK_CHARS = 256  # ~64 tokens at llm-d's 4 characters per token
BLOCK_TOKENS = 64
CAPACITY = 200_000  # keys remembered (about 12M tokens of distinct prefixes)


def block_keys(prompt: str | list[int]) -> list[int]:
    """Chained hashes of the prompt's whole blocks (a trailing partial block is not cached by vLLM)."""
    keys: list[int] = []
    prev = 0
    if isinstance(prompt, str):
        for start in range(0, len(prompt) - BLOCK_CHARS + 1, BLOCK_CHARS):
            prev = hash((prev, prompt[start : start + BLOCK_CHARS]))
            keys.append(prev)
    else:
        for start in range(0, len(prompt) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
            prev = hash((prev, tuple(prompt[start : start + BLOCK_TOKENS])))
            keys.append(prev)
    return keys


class PrefixIndex:
    """Prefix-block key -> the instance URLs it was sent to, LRU-bounded. Not thread-safe: the pool's
    lock guards it."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._where: OrderedDict[int, set[str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._where)

    def matched_blocks(self, keys: list[int], url: str) -> int:
        """How many leading blocks of the prompt were sent to `url`."""
        n = 0
        for key in keys:
            urls = self._where.get(key)
            if urls is None or url not in urls:
                break
            n += 1
        return n

    def add(self, keys: list[int], url: str) -> None:
        where = self._where
        for key in keys:
            urls = where.get(key)
            if urls is None:
                where[key] = {url}
            else:
                urls.add(url)
                where.move_to_end(key)
        while len(where) > self.capacity:
            where.popitem(last=False)

    def forget(self, url: str) -> None:
        """An instance left the pool: its entries no longer say anything."""
        for key in [k for k, urls in self._where.items() if url in urls]:
            urls = self._where[key]
            urls.discard(url)
            if not urls:
                del self._where[key]

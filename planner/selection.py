"""Instance selection as the proxy does it (proxy/instances.py `InstancePool.acquire`), without locks.

round_robin: a counter picks instance counter % n. least_outstanding: the fewest requests in flight,
scanning from the round-robin position so ties spread evenly. Outstanding counts from acquire until
release: a prefill instance until its leg ends, a decode (or aggregated) instance until the stream
ends; the proxy acquires both instances of a P/D request when the request arrives.
"""

from __future__ import annotations


class Selector:
    __slots__ = ("_counter", "least", "n", "outstanding", "served")

    def __init__(self, n: int, policy: str) -> None:
        if n < 1:
            raise ValueError(f"a pool needs >= 1 instance, got {n}")
        if policy not in ("round_robin", "least_outstanding"):
            raise ValueError(f"unknown selection policy {policy!r}; use round_robin or least_outstanding")
        self.n = n
        self.least = policy == "least_outstanding"
        self.outstanding = [0] * n
        self.served = [0] * n
        self._counter = 0

    def acquire(self) -> int:
        n = self.n
        chosen = self._counter % n
        self._counter += 1
        if self.least:
            out = self.outstanding
            start = chosen
            for offset in range(1, n):
                cand = (start + offset) % n
                if out[cand] < out[chosen]:
                    chosen = cand
        self.outstanding[chosen] += 1
        self.served[chosen] += 1
        return chosen

    def release(self, index: int) -> None:
        self.outstanding[index] -= 1

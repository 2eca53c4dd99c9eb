"""Instance pools (static and ZMQ-discovered), their selection policies, and who is out of rotation."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from proxy.config import POLICIES, InstanceSpec
from proxy.prefix import PrefixIndex


class NoInstanceError(LookupError):
    """The pool has no live instance to pick."""


@dataclass(slots=True, eq=False)
class Instance:
    """A backend with its in-flight count; `expires_at` is None for static instances.

    `out_since` is set while passive health keeps it out of rotation, with the fault (`out_cause`:
    unreachable, connect_timeout, timeout, disconnected) and the failure's message (`out_reason`);
    `probe_at` is when its /health is asked next, `last_probe` what the last one said.
    """

    url: str
    kv_address: str | None
    source: str  # "static" | "discovery"
    outstanding: int = 0
    expires_at: float | None = None
    served: int = 0
    out_since: float | None = None
    out_cause: str | None = None
    out_reason: str | None = None
    probe_at: float = 0.0
    last_probe: str | None = None
    ejections: int = 0
    prefill_tokens: int = 0  # prompt tokens of the prefill legs in flight here (the load policy reads it)

    @property
    def in_rotation(self) -> bool:
        return self.out_since is None

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "url": self.url,
            "kv_address": self.kv_address,
            "source": self.source,
            "outstanding": self.outstanding,
            "served": self.served,
            "expires_in_s": None if self.expires_at is None else round(self.expires_at - now, 3),
            "in_rotation": self.in_rotation,
            "out_cause": self.out_cause,
            "out_reason": self.out_reason,
            "out_for_s": None if self.out_since is None else round(now - self.out_since, 3),
            "last_probe": self.last_probe,
            "ejections": self.ejections,
            "prefill_tokens": self.prefill_tokens,
        }


class InstancePool:
    """Instances of one role (prefill, decode or backend) and one selection policy.

    `acquire` picks an instance in rotation and counts it as outstanding until `release`. When every
    instance is out of rotation it picks among all of them (failing fast would turn one blip of a lone
    backend into seconds of errors; a dead one still answers with a fast connection error). Static
    instances stay forever; discovered ones expire `ttl_s` after their last heartbeat. Thread-safe: the
    discovery thread registers while the event loop acquires.
    """

    def __init__(self, role: str, policy: str, specs: list[InstanceSpec] | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown selection policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.role = role
        self.policy = policy
        self._lock = threading.Lock()
        self._instances: dict[str, Instance] = {}
        self._counter = 0
        self._dynamic = False  # becomes True on the first discovered instance
        self.prefix: PrefixIndex | None = PrefixIndex() if policy == "prefix" else None
        for spec in specs or []:
            self._instances[spec.url] = Instance(spec.url, spec.kv_address, "static")

    def register(self, url: str, kv_address: str | None, ttl_s: float) -> bool:
        """Add or refresh a discovered instance; returns True when it is new (or its KV address changed)."""
        expires = time.monotonic() + ttl_s
        with self._lock:
            self._dynamic = True
            inst = self._instances.get(url)
            if inst is None:
                self._instances[url] = Instance(url, kv_address, "discovery", expires_at=expires)
                return True
            if inst.source == "static":
                return False
            changed = inst.kv_address != kv_address
            inst.kv_address = kv_address
            inst.expires_at = expires
            return changed

    def _live(self, now: float) -> list[Instance]:
        expired = [u for u, i in self._instances.items() if i.expires_at is not None and i.expires_at <= now]
        for url in expired:
            del self._instances[url]
            if self.prefix is not None:
                self.prefix.forget(url)
        return list(self._instances.values())

    def instances(self) -> list[Instance]:
        """Live instances, in registration order."""
        with self._lock:
            return self._live(time.monotonic())

    def describe(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [inst.describe(now) for inst in self._live(now)]

    def acquire(self, exclude: Collection[Instance] = (), keys: list[int] | None = None) -> Instance:
        """Pick an instance by the pool's policy and count it as outstanding.

        With `exclude` (a retry), only instances in rotation and not excluded qualify. `keys`: the
        prompt's prefix-block keys (proxy/prefix.py), read and recorded under the `prefix` policy.
        """
        with self._lock:
            live = self._live(time.monotonic()) if self._dynamic else list(self._instances.values())
            if not live:
                raise NoInstanceError(f"no {self.role} instance available")
            candidates = [i for i in live if i.out_since is None and i not in exclude]
            if not candidates:
                if exclude:
                    raise NoInstanceError(f"no other {self.role} instance in rotation")
                candidates = live
            start = self._counter % len(candidates)
            if not exclude:  # a retry does not move the round robin on
                self._counter += 1
            chosen = candidates[start]
            if self.policy != "round_robin":
                chosen = self._best(candidates, start, keys)
            chosen.outstanding += 1
            chosen.served += 1
            if self.prefix is not None and keys:
                self.prefix.add(keys, chosen.url)
            return chosen

    def _best(self, candidates: list[Instance], start: int, keys: list[int] | None) -> Instance:
        """least_outstanding: the fewest in flight; prefix: the longest matched prefix, then the fewest
        in flight. Ties go round robin (scanning from `start`) so equal load spreads."""
        index = self.prefix if keys else None

        def rank(inst: Instance) -> tuple[int, int]:
            matched = index.matched_blocks(keys, inst.url) if index is not None and keys else 0
            return (-matched, inst.outstanding)

        chosen = candidates[start]
        best = rank(chosen)
        for offset in range(1, len(candidates)):
            cand = candidates[(start + offset) % len(candidates)]
            r = rank(cand)
            if r < best:
                chosen, best = cand, r
        return chosen

    def least_prefill_tokens(self) -> int:
        """The prefill tokens in flight on the least-loaded instance in rotation (all, if none is)."""
        with self._lock:
            live = self._live(time.monotonic()) if self._dynamic else list(self._instances.values())
            in_rotation = [i for i in live if i.out_since is None] or live
            return min((i.prefill_tokens for i in in_rotation), default=0)

    def release(self, inst: Instance) -> None:
        """The request on `inst` finished (whatever its outcome)."""
        with self._lock:
            inst.outstanding -= 1

    def eject(self, inst: Instance, cause: str, reason: str, hold_s: float) -> bool:
        """Take `inst` out of rotation for at least `hold_s`; True when it was in rotation."""
        now = time.monotonic()
        with self._lock:
            inst.out_cause = cause
            inst.out_reason = reason
            inst.probe_at = now + hold_s
            if inst.out_since is not None:
                return False
            inst.out_since = now
            inst.ejections += 1
            return True

    def due_for_probe(self) -> list[Instance]:
        """Instances out of rotation whose hold time is over."""
        now = time.monotonic()
        with self._lock:
            return [i for i in self._live(now) if i.out_since is not None and i.probe_at <= now]

    def keep_out(self, inst: Instance, probe_result: str, next_probe_s: float) -> None:
        """A probe failed: stay out, ask again in `next_probe_s`."""
        with self._lock:
            inst.last_probe = probe_result
            inst.probe_at = time.monotonic() + next_probe_s

    def readmit(self, inst: Instance) -> float | None:
        """Put `inst` back into rotation; returns how long it was out (None if it was in)."""
        with self._lock:
            if inst.out_since is None:
                return None
            out_for = time.monotonic() - inst.out_since
            inst.out_since = inst.out_cause = inst.out_reason = inst.last_probe = None
            return out_for

"""Instance pools (static and ZMQ-discovered) and the selection policies over them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from proxy.config import POLICIES, InstanceSpec


class NoInstanceError(LookupError):
    """The pool has no live instance to pick."""


@dataclass(slots=True, eq=False)
class Instance:
    """A backend with its in-flight count; `expires_at` is None for static instances."""

    url: str
    kv_address: str | None
    source: str  # "static" | "discovery"
    outstanding: int = 0
    expires_at: float | None = None
    served: int = 0

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "url": self.url,
            "kv_address": self.kv_address,
            "source": self.source,
            "outstanding": self.outstanding,
            "served": self.served,
            "expires_in_s": None if self.expires_at is None else round(self.expires_at - now, 3),
        }


class InstancePool:
    """Instances of one role (prefill or decode) and one selection policy.

    `acquire` picks an instance and counts it as outstanding until `release`. Static instances stay
    forever; discovered ones expire `ttl_s` after their last heartbeat. Thread-safe: the discovery
    thread registers while the event loop acquires.
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
        return list(self._instances.values())

    def instances(self) -> list[Instance]:
        """Live instances, in registration order."""
        with self._lock:
            return self._live(time.monotonic())

    def describe(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [inst.describe(now) for inst in self._live(now)]

    def acquire(self) -> Instance:
        """Pick an instance by the pool's policy and count it as outstanding."""
        with self._lock:
            live = self._live(time.monotonic()) if self._dynamic else list(self._instances.values())
            if not live:
                raise NoInstanceError(f"no {self.role} instance available")
            start = self._counter % len(live)
            self._counter += 1
            if self.policy == "round_robin":
                chosen = live[start]
            else:  # least_outstanding; ties go round robin so equal load spreads
                chosen = live[start]
                for offset in range(1, len(live)):
                    cand = live[(start + offset) % len(live)]
                    if cand.outstanding < chosen.outstanding:
                        chosen = cand
            chosen.outstanding += 1
            chosen.served += 1
            return chosen

    def release(self, inst: Instance) -> None:
        """The request on `inst` finished (whatever its outcome)."""
        with self._lock:
            inst.outstanding -= 1

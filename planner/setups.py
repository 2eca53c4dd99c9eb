"""Serving setups the planner compares: one instance, N replicas, and xPyD (one GPU per instance)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from planner.routing import SPLIT, parse_route

POLICIES = ("round_robin", "least_outstanding")  # the proxy's selection policies (proxy/config.py)
_XPYD = re.compile(r"^(\d+)p(\d+)d$")
_REPLICAS = re.compile(r"^replicas:(\d+)$")


@dataclass(frozen=True)
class Setup:
    """`n_prefill` prefill and `n_decode` decode instances; n_prefill = 0 means aggregated instances
    (prefill and decode share every GPU), `n_decode` of them behind the proxy's `policy`. `route`: the
    proxy's per-request policy of an xPyD setup (planner/routing.py; split for aggregated setups)."""

    n_prefill: int
    n_decode: int
    policy: str = "round_robin"
    route: str = SPLIT

    def __post_init__(self) -> None:
        if self.n_prefill < 0 or self.n_decode < 1:
            raise ValueError(f"a setup needs >= 1 decode (or aggregated) instance, got {self}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown selection policy {self.policy!r}; use {' or '.join(POLICIES)}")
        object.__setattr__(self, "route", parse_route(self.route).name)  # one spelling per rule
        if self.route != SPLIT and not self.disaggregated:
            raise ValueError(f"policy {self.route} chooses a P/D path; {self.name} has no prefill side")

    @property
    def disaggregated(self) -> bool:
        return self.n_prefill > 0

    @property
    def gpus(self) -> int:
        return self.n_prefill + self.n_decode

    @property
    def name(self) -> str:
        if self.disaggregated:
            pd = f"{self.n_prefill}P{self.n_decode}D"
            return pd if self.route == SPLIT else f"{pd} {self.route}"
        return "single" if self.n_decode == 1 else f"replicas:{self.n_decode}"


def parse_setup(text: str, policy: str = "round_robin") -> Setup:
    """ "single", "replicas:N" or "xPyD" (e.g. 1P1D, 2p6d), an xPyD optionally followed by its per-request
    policy after a slash or a space: "1P1D/threshold:1024", "2P2D load"."""
    t, _, route = text.strip().lower().replace("/", " ").partition(" ")
    if route.strip():
        m = _XPYD.match(t)
        if m is None:
            raise ValueError(f"setup {text!r}: a per-request policy needs an xPyD setup such as 1P1D")
        return Setup(int(m.group(1)), int(m.group(2)), policy, route.strip())
    if t == "single":
        return Setup(0, 1, policy)
    if m := _REPLICAS.match(t):
        return Setup(0, int(m.group(1)), policy)
    if m := _XPYD.match(t):
        return Setup(int(m.group(1)), int(m.group(2)), policy)
    raise ValueError(f"unknown setup {text!r}; write single, replicas:N or xPyD such as 1P1D or 2P6D")


def candidate_setups(gpus: int, policy: str = "round_robin") -> list[Setup]:
    """Every way to use exactly `gpus` GPUs: N replicas (single for 1) and each xPyD with x + y = gpus."""
    if gpus < 1:
        raise ValueError(f"GPU count must be >= 1, got {gpus}")
    return [Setup(0, gpus, policy)] + [Setup(x, gpus - x, policy) for x in range(1, gpus)]

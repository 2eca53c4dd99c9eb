"""Serving setups the planner compares: one instance, N replicas, and xPyD (one GPU per instance).

Their names ("single", "replicas:N", "xPyD") are the schema's setup forms (experiments.schema.vocabulary);
a planner setup adds the proxy's selection policy and, for xPyD, its per-request path policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.schema import SetupForm, parse_form
from testbed.route_rule import SPLIT, parse_route_policy

POLICIES = ("round_robin", "least_outstanding")  # the proxy's selection policies (proxy/config.py)


@dataclass(frozen=True)
class Setup:
    """`n_prefill` prefill and `n_decode` decode instances; n_prefill = 0 means aggregated instances
    (prefill and decode share every GPU), `n_decode` of them behind the proxy's `policy`. `route`: the
    proxy's per-request policy of an xPyD setup (testbed/route_rule.py; split for aggregated setups)."""

    n_prefill: int
    n_decode: int
    policy: str = "round_robin"
    route: str = SPLIT

    def __post_init__(self) -> None:
        SetupForm(self.n_prefill, self.n_decode)  # VocabularyError (a ValueError) for impossible counts
        if self.policy not in POLICIES:
            raise ValueError(f"unknown selection policy {self.policy!r}; use {' or '.join(POLICIES)}")
        object.__setattr__(self, "route", parse_route_policy(self.route).name)  # one spelling per rule
        if self.route != SPLIT and not self.disaggregated:
            raise ValueError(f"policy {self.route} chooses a P/D path; {self.name} has no prefill side")

    @property
    def disaggregated(self) -> bool:
        return self.n_prefill > 0

    @property
    def gpus(self) -> int:
        return self.n_prefill + self.n_decode

    @property
    def form(self) -> SetupForm:
        return SetupForm(self.n_prefill, self.n_decode)

    @property
    def name(self) -> str:
        """The form's name ("single", "replicas:N", "xPyD"), then a route other than split: "1P1D local"."""
        return self.form.name if self.route == SPLIT else f"{self.form.name} {self.route}"


def parse_setup(text: str, policy: str = "round_robin") -> Setup:
    """ "single", "replicas:N" or "xPyD" (e.g. 1P1D, 2p6d), an xPyD optionally followed by its per-request
    policy after a slash or a space: "1P1D/threshold:1024", "2P2D load"."""
    head, _, route = text.strip().replace("/", " ").partition(" ")
    form = parse_form(head)
    if route.strip() and not form.n_prefill:
        raise ValueError(f"setup {text!r}: a per-request policy needs an xPyD setup such as 1P1D")
    return Setup(form.n_prefill, form.n_decode, policy, route.strip().lower() or SPLIT)


def candidate_setups(gpus: int, policy: str = "round_robin") -> list[Setup]:
    """Every way to use exactly `gpus` GPUs: N replicas (single for 1) and each xPyD with x + y = gpus."""
    if gpus < 1:
        raise ValueError(f"GPU count must be >= 1, got {gpus}")
    return [Setup(0, gpus, policy)] + [Setup(x, gpus - x, policy) for x in range(1, gpus)]

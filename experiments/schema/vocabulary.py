"""The serving-setup vocabulary: every name a setup goes by, parsed and printed here and nowhere else.

    mode      run_experiment.py --mode: what the endpoint is    traditional | disagg | passthrough
    kind      ServingSetup.kind: how it serves                  single | xpyd | replicas (| unknown)
    roles     the monitored GPUs' default roles per mode        serving,idle | prefill,decode | serving x2
    label     ServingSetup.label, the name in reports           "1 instance" | "1P1D nixl" | "2 replicas"
    campaign  disagg.campaigns.frontier --setups (result dirs)  single | pd | pd-nixl | replicas
    form      the planner's --setup (P/D counts, no connector)  single | xPyD (1P1D, 2P6D) | replicas:N

A mode names a kind: traditional = one instance (single), disagg = x prefill + y decode instances behind
our P/D proxy (xpyd), passthrough = independent instances behind the proxy's round robin (replicas).
Results that recorded no serving setup are read through that map. Unknown names raise `VocabularyError`
(a ValueError), one line naming the valid ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

Mode = Literal["traditional", "disagg", "passthrough"]
SetupKind = Literal["single", "replicas", "xpyd", "unknown"]
MODES: tuple[Mode, ...] = get_args(Mode)
KINDS: tuple[SetupKind, ...] = ("single", "xpyd", "replicas")  # report order; "unknown" sorts last
BASELINE_KIND: SetupKind = "single"  # the first present is a comparison's baseline
AGGREGATED_KINDS: tuple[SetupKind, ...] = ("single", "replicas")  # prefill and decode share each GPU
SERVING_ROLES = ("serving", "prefill", "decode")  # GPU roles that serve (the rest: "idle")


class VocabularyError(ValueError):
    """A setup name this vocabulary does not know; the message is one line naming the valid ones."""


@dataclass(frozen=True)
class ModeSpec:
    """What a mode's endpoint is: its setup kind and the roles of the monitored GPUs (first to last)."""

    mode: Mode
    kind: SetupKind
    gpu_roles: tuple[str, ...]


MODE_SPECS: dict[Mode, ModeSpec] = {
    "traditional": ModeSpec("traditional", "single", ("serving", "idle")),
    "disagg": ModeSpec("disagg", "xpyd", ("prefill", "decode")),
    "passthrough": ModeSpec("passthrough", "replicas", ("serving", "serving")),
}


def _one_of(what: str, text: object, valid: Iterable[str]) -> VocabularyError:
    return VocabularyError(f"unknown {what} {text!r}; choose one of {', '.join(valid)}")


def parse_mode(text: str) -> Mode:
    """A mode by name (exact: the runner's --mode choices)."""
    if text not in MODE_SPECS:
        raise _one_of("mode", text, MODES)
    return MODE_SPECS[text].mode  # type: ignore[index]


def kind_of_mode(mode: str) -> SetupKind:
    """The setup kind a mode drives ("unknown" for a mode this vocabulary does not know)."""
    spec = MODE_SPECS.get(mode)  # type: ignore[call-overload]
    return spec.kind if spec is not None else "unknown"


def mode_of_kind(kind: str) -> Mode:
    """The mode that drives a kind (the runner's --mode for a setup of that kind)."""
    spec = next((m for m in MODE_SPECS.values() if m.kind == kind), None)
    if spec is None:
        raise _one_of("setup kind", kind, KINDS)
    return spec.mode


def gpu_roles_of_mode(mode: str) -> tuple[str, ...]:
    """The monitored GPUs' roles when none are given (the first GPU's first)."""
    return MODE_SPECS[parse_mode(mode)].gpu_roles


def parse_kind(text: object) -> SetupKind:
    """A kind as another program reported it; anything else is "unknown" (never an error)."""
    return next((k for k in KINDS if k == text), "unknown")


def kind_rank(kind: str) -> int:
    """A kind's place in report order (single, xpyd, replicas; anything else after them)."""
    return KINDS.index(kind) if kind in KINDS else len(KINDS)  # type: ignore[arg-type]


# ---------------------------------------------------------------- planner form: single | xPyD | replicas:N

_XPYD = re.compile(r"^(\d+)p(\d+)d$")
_REPLICAS = re.compile(r"^replicas:(\d+)$")


@dataclass(frozen=True)
class SetupForm:
    """How many instances of each role: `n_prefill` prefill and `n_decode` decode instances; n_prefill = 0
    means `n_decode` aggregated instances (prefill and decode share each GPU). One GPU per instance."""

    n_prefill: int
    n_decode: int

    def __post_init__(self) -> None:
        if self.n_prefill < 0 or self.n_decode < 1:
            raise VocabularyError(
                f"a setup needs >= 1 decode (or aggregated) instance and >= 0 prefill ones, got "
                f"{self.n_prefill} prefill and {self.n_decode} decode"
            )

    @property
    def kind(self) -> SetupKind:
        if self.n_prefill:
            return "xpyd"
        return "single" if self.n_decode == 1 else "replicas"

    @property
    def gpus(self) -> int:
        return self.n_prefill + self.n_decode

    @property
    def name(self) -> str:
        """ "single", "replicas:N" or "xPyD" (1P1D, 2P6D): what `parse_form` reads back."""
        if self.n_prefill:
            return _xpyd(self.n_prefill, self.n_decode)
        return "single" if self.n_decode == 1 else f"replicas:{self.n_decode}"

    def label(self, connector: str | None = None) -> str:
        """Its name in reports (`setup_label`): "1 instance", "2 replicas", "1P1D nixl"."""
        n = self.n_decode
        return setup_label(self.kind, n, n_prefill=self.n_prefill, n_decode=n, connector=connector)

    def __str__(self) -> str:
        return self.name


def _xpyd(n_prefill: int, n_decode: int) -> str:
    return f"{n_prefill}P{n_decode}D"


def parse_form(text: str) -> SetupForm:
    """ "single", "replicas:N" or "xPyD" with x >= 1 (any case: 1P1D, 2p6d); "replicas:1" is "single"."""
    t = text.strip().lower()
    if t == "single":
        return SetupForm(0, 1)
    if m := _REPLICAS.match(t):
        return SetupForm(0, int(m.group(1)))
    if (m := _XPYD.match(t)) and int(m.group(1)):
        return SetupForm(int(m.group(1)), int(m.group(2)))
    raise VocabularyError(f"unknown setup {text!r}; write single, replicas:N or xPyD such as 1P1D or 2P6D")


def form_of(kind: str, n_instances: int, n_prefill: int | None, n_decode: int | None) -> SetupForm | None:
    """The form of a recorded setup (ServingSetup.form); None when its counts do not tell."""
    if kind == "xpyd" and n_prefill and n_decode:
        return SetupForm(n_prefill, n_decode)
    if kind in AGGREGATED_KINDS and n_instances:
        return SetupForm(0, n_instances)
    return None


def form_of_roles(mode: str, roles: Iterable[str]) -> SetupForm | None:
    """The form of a result that recorded no setup: its mode's kind and its GPUs' roles."""
    roles = list(roles)
    kind = kind_of_mode(mode)
    n_p, n_d, n_s = (roles.count(r) for r in ("prefill", "decode", "serving"))
    if kind == "xpyd":
        return SetupForm(n_p, n_d) if n_p and n_d else None
    return SetupForm(0, n_s) if kind in AGGREGATED_KINDS and n_s else None


# ---------------------------------------------------------------- labels


def setup_label(
    kind: SetupKind,
    n_instances: int,
    *,
    n_prefill: int = 0,
    n_decode: int = 0,
    connector: str | None = None,
    send_type: str | None = None,
    push: bool = False,
    policy: str | None = None,
) -> str:
    """The name in reports: "1 instance", "2 replicas", "1P1D p2p_nccl GET", "1P1D nixl push",
    "1P1D nixl threshold:1024" (a per-request policy other than split)."""
    if kind == "xpyd":
        words = [_xpyd(n_prefill, n_decode), connector, send_type, "push" if push else None]
        words.append(policy if policy != "split" else None)
        return " ".join(w for w in words if w)
    return f"{n_instances} replicas" if kind == "replicas" else "1 instance"


# ---------------------------------------------------------------- campaign setups


@dataclass(frozen=True)
class CampaignSetup:
    """A setup of the frontier campaign: its name (also its results folder), the runner's mode, and the
    KV connector the launcher is given (None: the launcher's own choice)."""

    name: str
    mode: Mode
    connector: str | None = None

    @property
    def kind(self) -> SetupKind:
        return kind_of_mode(self.mode)

    @property
    def gpu_roles(self) -> tuple[str, ...]:
        return gpu_roles_of_mode(self.mode)


CAMPAIGN_SETUPS: dict[str, CampaignSetup] = {
    s.name: s
    for s in (
        CampaignSetup("single", "traditional"),
        CampaignSetup("replicas", "passthrough"),
        CampaignSetup("pd", "disagg"),
        CampaignSetup("pd-nixl", "disagg", "nixl"),
    )
}


def parse_campaign_setups(text: str) -> list[CampaignSetup]:
    """Comma-separated campaign setup names, in the order given."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = next((n for n in names if n not in CAMPAIGN_SETUPS), None)
    if bad is not None:
        raise _one_of("setup", bad, CAMPAIGN_SETUPS)
    return [CAMPAIGN_SETUPS[n] for n in names]

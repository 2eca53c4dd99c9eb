"""Where the joules went: each GPU's counter energy split into idle and per-request, per-phase parts.

Stored: per GPU the counter energy, its idle part (idle power x window: attributed to nobody), the
dynamic rest by phase, how much of it fell where nothing was in flight (`unplaced_j`, spread over the
requests by their shares), and the power fit that split the phases; per request its joules by phase
(`Record.energy`). Computed: sums, and the per-token figures. `experiments.attribution` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.schema.base import computed
from experiments.schema.summary import Distribution

PHASES: tuple[str, ...] = ("prefill", "decode", "transfer")


@dataclass(slots=True, kw_only=True)
class RequestEnergy:
    """One request's share of the GPUs' dynamic energy by phase (J); `transfer_j` is None on a co-located
    instance (no KV transfer). Idle energy is nobody's and is not in here."""

    prefill_j: float = 0.0
    decode_j: float = 0.0
    transfer_j: float | None = None

    @computed
    def total_j(self) -> float:
        return self.prefill_j + self.decode_j + (self.transfer_j or 0.0)


@dataclass(slots=True, kw_only=True)
class PowerFit:
    """Dynamic power (W above idle) fitted, by non-negative least squares over the window's intervals
    (experiments.power_intervals: their joules from the energy counter), to what was in flight in each.
    `coef_w` is W per unit of each term (`TERMS` in experiments.attribution); `r2` and `rel_rmse`
    (residual RMS / mean dynamic power) say how well the in-flight work explains the power; only the
    ratio of the terms splits an interval, the measured energy sets its joules. `samples`: intervals."""

    coef_w: dict[str, float] = field(default_factory=dict)
    r2: float | None = None
    rel_rmse: float | None = None
    samples: int = 0
    # How late the power readings were taken to be (s), chosen as the fit's best; None where the energy
    # counter, read on every sample, gave each interval's joules and no reading was used.
    reading_lag_s: float | None = None


@dataclass(slots=True, kw_only=True)
class GpuAttribution:
    """One GPU: counter energy = idle_j + prefill_j + decode_j + transfer_j (the last three include
    `unplaced_j`, dynamic energy of samples with nothing modelled in flight, spread by share)."""

    index: int
    role: str
    energy_j: float
    idle_j: float
    prefill_j: float = 0.0
    decode_j: float = 0.0
    transfer_j: float = 0.0
    unplaced_j: float = 0.0
    fit: PowerFit | None = None
    note: str = ""

    @computed
    def attributed_j(self) -> float:
        return self.prefill_j + self.decode_j + self.transfer_j

    @computed
    def closure(self) -> float | None:
        """(idle + attributed) / counter energy: 1 when every joule is accounted for."""
        return (self.idle_j + self.attributed_j) / self.energy_j if self.energy_j else None


@dataclass(slots=True, kw_only=True)
class PhaseTotals:
    """The measured successful requests' attributed joules and tokens (what per-token figures divide)."""

    requests: int = 0
    prompt_tokens: int = 0
    decode_tokens: int = 0  # output tokens after the first (the prefill step makes the first)
    prefill_j: float = 0.0
    decode_j: float = 0.0
    transfer_j: float | None = None

    @computed
    def prefill_j_per_prompt_token(self) -> float | None:
        return self.prefill_j / self.prompt_tokens if self.prompt_tokens else None

    @computed
    def decode_j_per_output_token(self) -> float | None:
        return self.decode_j / self.decode_tokens if self.decode_tokens else None


@dataclass(slots=True, kw_only=True)
class EnergyAttribution:
    """The result's `energy.attribution`: how the split was made, per GPU, and across requests.

    Distributions are across the measured successful requests: joules per request by phase, prefill J
    per prompt token, decode J per output token (over output tokens after the first, which the prefill
    made)."""

    method: str
    power_source: str
    gpus: list[GpuAttribution] = field(default_factory=list)
    totals: PhaseTotals = field(default_factory=PhaseTotals)
    prefill_j: Distribution = field(default_factory=Distribution)
    decode_j: Distribution = field(default_factory=Distribution)
    transfer_j: Distribution | None = None
    prefill_j_per_prompt_token: Distribution = field(default_factory=Distribution)
    decode_j_per_output_token: Distribution = field(default_factory=Distribution)
    warnings: list[str] = field(default_factory=list)

    @computed
    def idle_j(self) -> float:
        """Idle energy of every GPU: drawn with nothing to do, attributed to nobody."""
        return sum(g.idle_j for g in self.gpus)

    @computed
    def energy_j(self) -> float:
        return sum(g.energy_j for g in self.gpus)

    @computed
    def worst_closure_error(self) -> float | None:
        """The largest |closure - 1| over the GPUs (0.005 is the bound the tests hold)."""
        errs = [abs(c - 1.0) for g in self.gpus if (c := g.closure) is not None]
        return max(errs) if errs else None

"""Per-phase energy of a loaded run: its stored attribution, else one made now from its power CSV.

Runs measured before attribution existed carry no `energy.attribution`; where their power.csv is kept
beside the result (the committed GPU runs), the attribution is computed in memory (never written back),
so every report shows idle, prefill, decode and KV-transfer energy side by side. NA says why not.
"""

from __future__ import annotations

from analysis.runs import NA, Run, short_reason
from experiments.attribution import attribute_run
from experiments.schema import EnergyAttribution, HostEnergy


def attribution_of(run: Run) -> EnergyAttribution | NA:
    """The run's attribution (computed once when it was not stored), or why there is none."""
    if (na := run.energy_na) is not None:
        return na
    energy = run.result.energy
    assert energy is not None
    if energy.attribution is None:
        why = attribute_run(run.result)
        if why is not None or energy.attribution is None:
            return NA(
                short_reason((why or "not attributed").removeprefix("energy not attributed to requests: "))
            )
    return energy.attribution


def host_of(run: Run) -> HostEnergy | NA:
    """The run's RAPL host energy, or why there is none."""
    host = run.result.energy.host if run.result.energy is not None else None
    if host is None:
        return NA("host energy not recorded")
    return host if host.available else NA(short_reason(host.reason or "RAPL not readable"))

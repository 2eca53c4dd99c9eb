"""Synthetic measured runs, written through experiments.schema (RunResult.save) as the runner would.

`write_run` makes a run whose records and energy are what the simulator produces for a profile, setup
and rate: replayed by `planner validate` with the same profile, it must agree exactly. `scale_energy`
and `fail_requests` then make a measured run that disagrees in a known way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.arrivals import ArrivalConfig
from experiments.metrics import compute_summary
from experiments.schema import (
    EnergySection,
    EnergyWindow,
    GpuEnergy,
    Instance,
    InstanceSettings,
    Record,
    RunConfig,
    RunMetadata,
    RunResult,
    ServingSetup,
    WorkloadConfig,
)
from planner.outcome import estimate_energy
from planner.profile_model import Profile
from planner.setups import Setup
from planner.simulate import simulate
from planner.workload import WorkloadSpec, build_workload

S = 1_000_000_000
BASE_NS = 5_000 * S  # monotonic ns of the schedule's start
LEAD_S = 0.5  # the energy window opens this long before the first send


def _serving_setup(setup: Setup, budget: int) -> ServingSetup:
    settings = InstanceSettings(max_num_batched_tokens=budget)
    if setup.disaggregated:
        roles = ["prefill"] * setup.n_prefill + ["decode"] * setup.n_decode
        kind, label = "xpyd", setup.name
    else:
        roles = ["serving"] * setup.n_decode
        kind, label = ("single", "1 instance") if setup.n_decode == 1 else ("replicas", setup.name)
    instances = [Instance(name=f"{r}{i}", role=r, gpu=str(i), settings=settings) for i, r in enumerate(roles)]
    return ServingSetup(
        kind=kind,  # type: ignore[arg-type]
        label=label,
        select=setup.policy,
        num_instances=len(instances),
        num_prefill=setup.n_prefill or None,
        num_decode=setup.n_decode if setup.disaggregated else None,
        instances=instances,
    )


def write_run(
    run_dir: Path,
    profile: Profile,
    setup: Setup,
    rate: float,
    input_len: int = 512,
    output_len: int = 64,
    n: int = 60,
    seed: int = 0,
) -> Path:
    """A run of `n` requests at `rate` whose numbers are the simulator's own; returns its directory."""
    workload = build_workload(WorkloadSpec("random", n, input_len, output_len, seed=seed))
    arrivals = workload.arrivals("poisson", rate, 1.0, seed)
    sim = simulate(profile, setup, workload.prompt_tokens, workload.output_tokens, arrivals, None, rate)
    records = []
    for i in range(n):
        sent = BASE_NS + round(arrivals[i] * S)
        first = BASE_NS + round(sim.first_token_s[i] * S)
        end = BASE_NS + round(sim.end_s[i] * S)
        out = int(workload.output_tokens[i])
        chunks = np.linspace(first, end, out).round().astype(np.int64).tolist()
        records.append(
            Record(
                index=i,
                input_tokens_expected=int(workload.prompt_tokens[i]),
                output_tokens_expected=out,
                scheduled_mono_ns=sent,
                sent_mono_ns=sent,
                first_byte_mono_ns=first,
                first_token_mono_ns=first,
                end_mono_ns=end,
                chunk_mono_ns=chunks,
                prompt_tokens=int(workload.prompt_tokens[i]),
                completion_tokens=out,
                status=200,
                ok=True,
            )
        )
    window_s = LEAD_S + float(np.max(sim.end_s) - arrivals[0])
    energy = estimate_energy(sim, profile.power, window_s)
    assert energy.dynamic_j is not None and profile.power.idle_w is not None
    start = BASE_NS + round((arrivals[0] - LEAD_S) * S)
    gpus = [
        GpuEnergy(
            index=g,
            role=inst.role,
            energy_j=profile.power.idle_w * window_s + energy.dynamic_j / setup.gpus,
            duration_s=window_s,
            idle_power_w=profile.power.idle_w,
        )
        for g, inst in enumerate(_serving_setup(setup, profile.engine.max_num_batched_tokens).instances)
    ]
    mode = "disagg" if setup.disaggregated else "traditional" if setup.n_decode == 1 else "passthrough"
    config = RunConfig(
        mode=mode,
        endpoint="http://127.0.0.1:1",
        workload=WorkloadConfig(
            kind="random", num_requests=n, input_len=input_len, output_len=output_len, seed=seed
        ),
        arrival=ArrivalConfig(kind="poisson", rate=rate, seed=seed),
        gpu_ids=list(range(setup.gpus)),
    )
    result = RunResult(
        metadata=RunMetadata(
            mode=mode,
            endpoint=config.endpoint,
            config=config,
            serving_setup=_serving_setup(setup, profile.engine.max_num_batched_tokens),
        ),
        status="complete",
        summary=compute_summary(records),
        energy=EnergySection(
            available=True,
            window=EnergyWindow(
                name="measured",
                start_epoch_ns=start,
                end_epoch_ns=start + round(window_s * S),
                start_monotonic_ns=start,
                end_monotonic_ns=start + round(window_s * S),
                duration_s=window_s,
                interval_s=0.1,
            ),
            gpus=gpus,
        ),
        records=records,
    )
    result.save(run_dir)
    return run_dir


def scale_energy(run_dir: Path, factor: float) -> None:
    """Every GPU's measured joules times `factor`."""
    res = RunResult.load(run_dir)
    assert res.energy is not None
    for g in res.energy.gpus:
        assert g.energy_j is not None
        g.energy_j *= factor
    res.save(run_dir)


def fail_requests(run_dir: Path, indices: list[int]) -> None:
    """Mark requests failed (no token), as a crashed stream would leave them."""
    res = RunResult.load(run_dir)
    for r in res.records:
        if r.index in indices:
            r.ok, r.error, r.first_token_mono_ns, r.chunk_mono_ns = False, "test: stream cut", None, []
    res.summary = compute_summary(res.records)
    res.save(run_dir)

"""Synthetic rate sweeps through the real schema (RunResult, Record, EnergySection, ServingSetup), for the
frontier tests and bench/bench_frontier.py.

A request is given as (TTFT ms, TPOT ms), or None for a failed one; every successful request streams
OUTPUT_TOKENS tokens, one chunk each, TPOT apart, so its TPOT is exactly the one given. A run's power is
split evenly over its two GPUs for WINDOW_S seconds, idle power a quarter of it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from experiments.arrivals import ArrivalConfig
from experiments.metrics import compute_summary
from experiments.schema import (
    EnergySection,
    GpuEnergy,
    GpuInfo,
    GpuInventory,
    Instance,
    InstanceSettings,
    Record,
    RunConfig,
    RunMetadata,
    RunResult,
    ServingSetup,
    Sweep,
    WorkloadConfig,
    gpu_roles_of_mode,
    mode_of_kind,
)

MS = 1_000_000
S = 1_000_000_000
OUTPUT_TOKENS = 11
WINDOW_S = 10.0
IDLE_SHARE = 0.25
MODEL = "/models/Llama-3.1-8B-Instruct"

Request = tuple[float, float] | None
FAST: Request = (100.0, 10.0)  # meets every cell of the tests' grid
MEDIUM: Request = (800.0, 40.0)  # meets TTFT <= 1000 and TPOT <= 50 only
SLOW: Request = (3000.0, 80.0)  # meets none
FAILED: Request = None

ONE, REPLICAS, PD = "1 instance", "2 replicas", "1P1D p2p_nccl GET"


def _instance(name: str, role: str, gpu: str, batched: int = 8192) -> Instance:
    return Instance(
        name=name,
        role=role,
        url=f"http://127.0.0.1:{8100 + int(gpu)}",
        gpu=gpu,
        vllm_version="0.23.0",
        settings=InstanceSettings(gpu_memory_utilization=0.8, max_num_batched_tokens=batched),
    )


SETUPS: dict[str, ServingSetup] = {
    ONE: ServingSetup(
        kind="single",
        label=ONE,
        num_instances=1,
        gpus=["0"],
        num_gpus=1,
        vllm_versions=["0.23.0"],
        instances=[_instance("serving0", "serving", "0")],
    ),
    REPLICAS: ServingSetup(
        kind="replicas",
        label=REPLICAS,
        select="round_robin",
        num_instances=2,
        gpus=["0", "1"],
        num_gpus=2,
        vllm_versions=["0.23.0"],
        instances=[_instance("instance0", "serving", "0"), _instance("instance1", "serving", "1")],
    ),
    PD: ServingSetup(
        kind="xpyd",
        label=PD,
        connector="p2p_nccl",
        connector_options={"send_type": "GET"},
        select="round_robin",
        num_instances=2,
        num_prefill=1,
        num_decode=1,
        gpus=["0", "1"],
        num_gpus=2,
        vllm_versions=["0.23.0"],
        instances=[_instance("prefill0", "prefill", "0"), _instance("decode0", "decode", "1")],
    ),
}


def _record(index: int, sent_ns: int, request: Request, tokens: int = OUTPUT_TOKENS) -> Record:
    if request is None:
        return Record(
            index=index, sent_mono_ns=sent_ns, end_mono_ns=sent_ns + 5 * MS, status=500, error="HTTP 500"
        )
    ttft, tpot = request
    first = sent_ns + round(ttft * MS)
    chunks = [first + k * round(tpot * MS) for k in range(tokens)]
    return Record(
        index=index,
        input_tokens_expected=2048,
        output_tokens_expected=tokens,
        scheduled_mono_ns=sent_ns,
        sent_mono_ns=sent_ns,
        sent_epoch_ns=sent_ns,
        first_byte_mono_ns=first,
        first_token_mono_ns=first,
        end_mono_ns=chunks[-1],
        end_epoch_ns=chunks[-1],
        chunk_mono_ns=chunks,
        prompt_tokens=2048,
        completion_tokens=tokens,
        status=200,
        ok=True,
    )


def _energy(mode: str, power_w: float) -> EnergySection:
    gpus = [
        GpuEnergy(
            index=gpu,
            role=role,
            energy_j=power_w / 2 * WINDOW_S,
            method="energy_counter",
            duration_s=WINDOW_S,
            avg_power_w=power_w / 2,
            idle_power_w=IDLE_SHARE * power_w / 2,
        )
        for gpu, role in enumerate(gpu_roles_of_mode(mode))
    ]
    return EnergySection(available=True, method="energy_counter", gpus=gpus)


def sweep_run(
    setup: str,
    rate: float,
    requests: Sequence[Request],
    power_w: float | None = 1000.0,
    *,
    order: int = 0,
    input_len: int = 2048,
    sweep_id: str | None = None,
    record_setup: bool = True,
    output_tokens: int = OUTPUT_TOKENS,
) -> RunResult:
    """One complete run of `setup` (a key of SETUPS) at `rate` req/s; requests sent 1/rate s apart.

    `record_setup=False` makes an old result (no serving setup: the GPU count comes from mode and roles).
    """
    mode = mode_of_kind(SETUPS[setup].kind)
    seed = round(rate * 1000)  # fresh prompts per rate, the same at one rate across setups
    start = (1_000_000 + 3600 * order) * S
    records = [_record(i, start + round(i / rate * S), req, output_tokens) for i, req in enumerate(requests)]
    config = RunConfig(
        mode=mode,
        endpoint="http://127.0.0.1:8000",
        workload=WorkloadConfig(
            kind="random",
            num_requests=len(requests),
            input_len=input_len,
            output_len=output_tokens,
            seed=seed,
        ),
        arrival=ArrivalConfig(kind="poisson", rate=rate, seed=seed),
        gpu_ids=[0, 1],
        gpu_roles=dict(enumerate(gpu_roles_of_mode(mode))),
        sweep=None if sweep_id is None else Sweep(id=sweep_id, rate=rate),
    )
    metadata = RunMetadata(
        mode=mode,
        endpoint=config.endpoint,
        config=config,
        model=MODEL,
        serving_setup=copy.deepcopy(SETUPS[setup]) if record_setup else None,
        gpu_inventory=GpuInventory(
            available=True, gpus=[GpuInfo(index=i, name="NVIDIA H200") for i in (0, 1)]
        ),
        start_epoch_ns=start,
    )
    return RunResult(
        metadata=metadata,
        status="complete",
        summary=compute_summary(records),
        energy=None if power_w is None else _energy(mode, power_w),
        records=records,
    )


def save_sweep(root: Path, runs: Sequence[RunResult]) -> list[Path]:
    """Each run saved (RunResult.save) under root/<setup kind>/<mode>-rate<rate>-<order>/."""
    paths = []
    for i, run in enumerate(runs):
        setup = run.metadata.serving_setup
        kind = setup.kind if setup is not None else run.metadata.mode
        rate = run.metadata.config.offered_rate
        paths.append(run.save(root / kind / f"{run.metadata.mode}-rate{rate:g}-{i}"))
    return paths


def golden_runs() -> list[RunResult]:
    """The tests' three setups (grid ttft=500,1000 x tpot=25,50; see tests/analysis/test_frontier.py).

    1 instance (1 GPU) at 2, 4, 6, 8 req/s, 300/400/600/700 W: (500, 25) bracketed between 4 and 6,
      (1000, 50) never saturated (90% at 8 req/s, one request failed).
    2 replicas (2 GPUs) at 4, 8, 12 req/s, 800/900/1000 W: (500, 25) bracketed between 8 and 12,
      (1000, 50) never saturated.
    1P1D (2 GPUs) at 4, 8 req/s: never meets any cell.
    """
    ten = [FAST] * 10
    return [
        sweep_run(ONE, 2, ten, 300, order=0),
        sweep_run(ONE, 4, ten, 400, order=1),
        sweep_run(ONE, 6, [FAST] * 7 + [MEDIUM] * 3, 600, order=2),
        sweep_run(ONE, 8, [FAST] * 5 + [MEDIUM] * 4 + [FAILED], 700, order=3),
        sweep_run(REPLICAS, 4, ten, 800, order=4),
        sweep_run(REPLICAS, 8, ten, 900, order=5),
        sweep_run(REPLICAS, 12, [FAST] * 8 + [MEDIUM] * 2, 1000, order=6),
        sweep_run(PD, 4, [FAST] * 5 + [SLOW] * 5, 900, order=7),
        sweep_run(PD, 8, [FAST] * 2 + [SLOW] * 8, 1000, order=8),
    ]

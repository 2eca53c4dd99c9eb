#!/usr/bin/env python3
"""Write the golden result directories used by tests/analysis (schema 2.1, through the real writers).

Hand-made inputs only: request timestamps, stage timings, per-GPU joules, idle power, a power timeline
and the launch plans. Everything else comes from the real code: the serving setup from
experiments.serving_setup.from_plan, the summary and stage split from experiments.metrics, the energy
section from EnergyMeter.section over monitor.WindowResult objects and the export of a real PowerMonitor
(a short run on the simulated NVML backend: its timings differ on every regeneration, nothing reads
them), the files from RunResult.save / ResultWriter.

Runs (oldest first by metadata start time):
  other_model        traditional, same workload and hardware as the others but another model
  incomplete_disagg  disagg run that crashed after 2 of 3 requests (no final result.json, no energy)
  sweep/rate1,2,4    disagg sweep (one sweep id) at 1, 2 and 4 req/s, with energy
  traditional        one instance at 4 req/s, GPU 0 serving, GPU 1 idle, with energy
  disagg             1P1D p2p_nccl GET at 4 req/s, GPU 0 prefill, GPU 1 decode, with energy

Usage: python tests/golden/make_golden.py   (rewrites those directories under tests/golden/)
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from experiments.arrivals import ArrivalConfig
from experiments.energy import EnergyMeter
from experiments.metrics import compute_summary, stage_summary
from experiments.schema import (
    ClockAnchor,
    EnergySection,
    GpuInfo,
    GpuInventory,
    Provenance,
    Record,
    ResultWriter,
    RunConfig,
    RunMetadata,
    RunResult,
    ServingSetup,
    StageTimes,
    Sweep,
    WorkloadConfig,
)
from experiments.serving_setup import from_plan
from monitor import GpuWindow, PowerMonitor, WindowResult, open_backend

HERE = Path(__file__).resolve().parent
MS = 1_000_000
S = 1_000_000_000
MONO_BASE = 1_000_000 * S  # monotonic ns of the first run's first send
EPOCH_BASE = 1_800_000_000 * S  # epoch ns at that moment
ENDPOINT = "http://127.0.0.1:3"  # ports 1-3: nothing listens there, so no live /metrics is read
MODEL = "/models/Llama-3.1-8B-Instruct"
OTHER_MODEL = "/models/Qwen2.5-7B-Instruct"
SLO = {"ttft": 250.0, "tpot": 100.0}
ROLES = {"traditional": {0: "serving", 1: "idle"}, "disagg": {0: "prefill", 1: "decode"}}
IDLE_W = {0: 40.0, 1: 20.0}


class Clock:
    """The time origin of one run: its first measured send (t = 0 s)."""

    def __init__(self, order: int) -> None:
        self.mono = MONO_BASE + order * 3600 * S
        self.epoch = EPOCH_BASE + order * 3600 * S

    def mono_at(self, seconds: float) -> int:
        return self.mono + round(seconds * S)

    def epoch_at(self, seconds: float) -> int:
        return self.epoch + round(seconds * S)


def record(
    clock: Clock,
    index: int,
    sent_s: float,
    ttft_ms: float,
    gaps_ms: list[float],
    stages: tuple[float, float, float] | None = None,
    warmup: bool = False,
) -> Record:
    """A streaming-client record: sent at `sent_s`, first token after `ttft_ms`, then the gaps.

    `stages` = (prefill_ms, decode_first_chunk_ms, proxy_overhead_ms) as the proxy reports them.
    """
    sent = clock.mono_at(sent_s)
    chunks = [sent + round(ttft_ms * MS)]
    for gap in gaps_ms:
        chunks.append(chunks[-1] + round(gap * MS))
    end = chunks[-1]
    timing = None
    if stages is not None:
        prefill, first_chunk, overhead = stages
        timing = StageTimes(
            request_id=f"cmpl-golden-{index}",
            connector="golden",
            prefill_ms=prefill,
            decode_first_chunk_ms=first_chunk,
            decode_total_ms=first_chunk + sum(gaps_ms),
            proxy_overhead_ms=overhead,
        )
    return Record(
        index=index,
        request_id=f"cmpl-golden-{index}",
        warmup=warmup,
        input_tokens_expected=200,
        output_tokens_expected=len(chunks),
        scheduled_mono_ns=sent,
        sent_mono_ns=sent,
        sent_epoch_ns=clock.epoch_at(sent_s),
        first_byte_mono_ns=chunks[0],
        first_token_mono_ns=chunks[0],
        end_mono_ns=end,
        end_epoch_ns=clock.epoch + (end - clock.mono),
        chunk_mono_ns=chunks,
        prompt_tokens=200,
        completion_tokens=len(chunks),
        status=200,
        ok=True,
        stages=timing,
    )


def _serve(name: str, port: int, gpu: str, kv: dict[str, Any] | None = None) -> dict[str, Any]:
    cmd = ["vllm", "serve", MODEL, "--port", str(port), "--gpu-memory-utilization", "0.8"]
    if kv is not None:
        cmd += ["--kv-transfer-config", json.dumps(kv)]
    return {"name": name, "url": f"http://127.0.0.1:{port}", "gpu": gpu, "command": cmd}


def serving_setup(mode: str) -> ServingSetup:
    """The setup the launchers' plan describes (read by the real producer; no logs, no live /metrics)."""
    if mode == "traditional":
        plan: dict[str, Any] = {"instances": [_serve("serving0", 3, "0")], "endpoint": ENDPOINT}
    else:
        kv = {"kv_connector": "P2pNcclConnector", "kv_connector_extra_config": {"send_type": "GET"}}
        plan = {
            "prefill": [_serve("prefill0", 1, "0", kv)],
            "decode": [_serve("decode0", 2, "1", kv)],
            "proxy": ["python", "-m", "proxy", "--connector", "p2p_nccl", "--select", "round_robin"],
            "connector": "p2p_nccl",
            "connector_options": {"send_type": "GET"},
            "endpoint": ENDPOINT,
        }
    plan["vllm_version"] = "0.23.0"
    setup = from_plan(plan, Path("/golden/launch.json"), ENDPOINT)
    assert setup is not None
    return setup


def metadata(
    mode: str, clock: Clock, rate: float, model: str = MODEL, sweep: Sweep | None = None
) -> RunMetadata:
    config = RunConfig(
        mode=mode,
        endpoint=ENDPOINT,
        workload=WorkloadConfig(kind="random", num_requests=3, input_len=200, output_len=4, seed=0),
        arrival=ArrivalConfig(kind="poisson", rate=rate, warmup=1, seed=0),
        slo=dict(SLO),
        output_dir=Path("results/runs"),
        gpu_ids=[0, 1],
        gpu_roles=ROLES[mode],
        monitor_backend="nvml",
        idle_seconds=5.0,
        sweep=sweep,
    )
    provenance = Provenance(
        command_line=["python", "run_experiment.py", "--mode", mode, "(golden: hand-made)"],
        hostname="golden",
        platform="Linux-golden-x86_64",
        python="3.11.7",
        versions={"testbed": "0.1.0", "vllm_client_side": "0.23.0"},
        gpu_inventory=GpuInventory(
            available=True,
            driver="golden",
            gpus=[GpuInfo(index=i, name="NVIDIA H200", power_limit_w=700.0) for i in (0, 1)],
        ),
        start_epoch_ns=clock.epoch_at(-10.0),
        start_iso="golden",
        clock_anchor=ClockAnchor(epoch_ns=clock.epoch, mono_ns=clock.mono),
    )
    return RunMetadata.of(
        provenance,
        mode=mode,
        endpoint=ENDPOINT,
        config=config,
        model=model,
        tokenizer=model,
        served_models=[{"id": model, "object": "model", "root": model, "max_model_len": 4096}],
        serving_setup=serving_setup(mode),
    )


def real_monitor_export() -> dict[str, Any]:
    """What a real PowerMonitor exports (to_json): a short run on the simulated NVML backend."""
    monitor = PowerMonitor([0, 1], 0.05, open_backend("sim", n_gpus=2))
    monitor.start()
    monitor.measure_idle(0.2)
    monitor.begin_window("measured")
    time.sleep(0.2)
    monitor.end_window("measured")
    monitor.stop()
    return monitor.to_json()


class HandMadeMonitor:
    """Stands in for monitor.PowerMonitor in EnergyMeter.section: a real export, a fixed timeline."""

    def __init__(self, export: dict[str, Any], timeline: dict[str, Any]) -> None:
        self._export, self._timeline = export, timeline

    def to_json(self) -> dict[str, Any]:
        return self._export

    def timeline(self, max_points: int) -> dict[str, Any]:
        return self._timeline


def timeline(clock: Clock, duration_s: float, busy_w: dict[int, float]) -> dict[str, Any]:
    """Power every 0.1 s from 0.3 s before the window to 0.3 s after: idle outside, busy inside."""
    n = round((duration_s + 0.6) / 0.1) + 1
    times = [-0.3 + 0.1 * k for k in range(n)]
    power = {
        str(g): [busy_w[g] if 0.0 <= t <= duration_s else IDLE_W[g] for t in times] for g in sorted(busy_w)
    }
    return {
        "epoch_ns": [clock.epoch_at(t) for t in times],
        "power_w": power,
        "source": "power_instant",
        "points": n,
        "samples": n,
        "bin_s": 0.1,
    }


def energy_section(
    mode: str,
    clock: Clock,
    duration_s: float,
    joules: dict[int, float],
    peak_w: dict[int, float],
    export: dict,
) -> EnergySection:
    """The real EnergyMeter.section over a hand-made window: per-GPU joules over `duration_s`."""
    start, end = clock.mono_at(0.0), clock.mono_at(duration_s)
    gpus = {
        g: GpuWindow(
            index=g,
            energy_j=j,
            method="energy_counter",
            start_epoch_ns=clock.epoch_at(0.0),
            end_epoch_ns=clock.epoch_at(duration_s),
            start_monotonic_ns=start,
            end_monotonic_ns=end,
            duration_s=duration_s,
            avg_power_w=j / duration_s,
            peak_power_w=peak_w[g],
            sample_count=round(duration_s / 0.1) + 1,
            expected_samples=round(duration_s / 0.1) + 1,
            missing_samples=0,
            failed_samples=0,
            complete=True,
            note="golden: hand-made numbers",
        )
        for g, j in joules.items()
    }
    window = WindowResult(
        name="measured",
        start_epoch_ns=clock.epoch_at(0.0),
        end_epoch_ns=clock.epoch_at(duration_s),
        start_monotonic_ns=start,
        end_monotonic_ns=end,
        duration_s=duration_s,
        interval_s=0.1,
        gpus=gpus,
    )
    meter = EnergyMeter(list(joules), ROLES[mode], 0.1, "nvml", Path("power.csv"))
    meter.monitor = HandMadeMonitor(
        export, timeline(clock, duration_s, {g: j / duration_s for g, j in joules.items()})
    )
    meter.window, meter.idle_w, meter.idle_seconds = window, dict(IDLE_W), 5.0
    section = meter.section()
    section.power_csv = None  # no power CSV behind hand-made numbers
    return section


def write_run(
    name: str,
    mode: str,
    clock: Clock,
    rate: float,
    records: list[Record],
    energy: EnergySection | None,
    model: str = MODEL,
    sweep: Sweep | None = None,
    crash: bool = False,
) -> Path:
    run_dir = HERE / name
    shutil.rmtree(run_dir, ignore_errors=True)
    meta = metadata(mode, clock, rate, model, sweep)
    meta.run_dir = f"tests/golden/{name}"
    if crash:  # the process died after these records: result.json stays "running"
        writer = ResultWriter(run_dir, meta)
        for rec in records:
            writer.append(rec)
        writer.close()
        return run_dir
    meta.end_epoch_ns = clock.epoch_at(3.0)
    result = RunResult(
        metadata=meta,
        status="complete",
        summary=compute_summary(records, SLO),
        stages=stage_summary(records),
        energy=energy,
        records=records,
    )
    result.save(run_dir)
    return run_dir


def traditional_records(c: Clock) -> list[Record]:
    """TTFT 100/200/300 ms, 4 tokens each, the last token at t = 2.5 s (after one warm-up request)."""
    return [
        record(c, -1, -1.0, 100, [30, 30, 30], warmup=True),
        record(c, 0, 0.0, 100, [30, 30, 30]),
        record(c, 1, 1.0, 200, [30, 30, 30]),
        record(c, 2, 2.0, 300, [30, 30, 140]),
    ]


def main() -> None:
    export = real_monitor_export()
    joules_trad, peak_trad = {0: 300.0, 1: 50.0}, {0: 180.0, 1: 21.0}
    c = Clock(5)
    trad = traditional_records(c)
    energy = energy_section("traditional", c, 2.5, joules_trad, peak_trad, export)
    write_run("traditional", "traditional", c, 4.0, trad, energy)

    # disagg @ 4 req/s: TTFT 50/60/400 ms, stage split (prefill, decode first chunk, proxy overhead).
    c = Clock(6)
    dis = [
        record(c, -1, -1.0, 50, [20, 20, 20], (30, 15, 3), warmup=True),
        record(c, 0, 0.0, 50, [20, 20, 20], (30, 15, 3)),
        record(c, 1, 1.0, 60, [20, 20, 20], (35, 20, 3)),
        record(c, 2, 2.0, 400, [20, 20, 60], (300, 90, 5)),
    ]
    energy = energy_section("disagg", c, 2.5, {0: 150.0, 1: 180.0}, {0: 95.0, 1: 110.0}, export)
    write_run("disagg", "disagg", c, 4.0, dis, energy)

    # the traditional run again, but with another model: must be refused.
    c = Clock(0)
    other = traditional_records(c)
    energy = energy_section("traditional", c, 2.5, joules_trad, peak_trad, export)
    write_run("other_model", "traditional", c, 4.0, other, energy, model=OTHER_MODEL)

    # a disagg run that crashed after two requests.
    c = Clock(1)
    crashed = [
        record(c, 0, 0.0, 50, [20, 20, 20], (30, 15, 3)),
        record(c, 1, 1.0, 60, [20, 20, 20], (35, 20, 3)),
    ]
    write_run("incomplete_disagg", "disagg", c, 4.0, crashed, None, crash=True)

    # a disagg sweep: TTFT grows and energy per request falls as the rate grows.
    plan = {
        1.0: ([50, 55, 60], {0: 100.0, 1: 140.0}),
        2.0: ([80, 90, 100], {0: 70.0, 1: 110.0}),
        4.0: ([150, 200, 250], {0: 60.0, 1: 90.0}),
    }
    for k, (rate, (ttfts, joules)) in enumerate(plan.items()):
        c = Clock(2 + k)
        recs = [
            record(c, i, i / rate, ttft, [20, 20, 20], (0.6 * ttft, 0.3 * ttft, 2.0))
            for i, ttft in enumerate(ttfts)
        ]
        duration = 2 / rate + (ttfts[-1] + 60) / 1000  # last send + its TTFT + 3 gaps of 20 ms
        energy = energy_section("disagg", c, duration, joules, {0: 90.0, 1: 130.0}, export)
        sweep = Sweep(id="golden-sweep", rates=list(plan), rate=rate, seed_offset=0)
        write_run(f"sweep/rate{rate:g}", "disagg", c, rate, recs, energy, sweep=sweep)
    print(f"golden results written under {HERE}")


if __name__ == "__main__":
    main()

"""Energy attribution recovers a planted power model, measured through the simulated NVML backend.

Each GPU's power is planted as idle + A x (prompt tokens/s being prefilled) + B x (sequences decoding)
(+ X x transfers in flight on P/D), so by hand: a request's prefill costs A x its prompt tokens, its decode
B x its decode time, its transfer (X_prefill_gpu + X_decode_gpu) x its transfer time. The monitor samples
the simulated GPUs in real time and the counter integrates the planted power; attribution must give those
joules back, and idle + parts must be the counter's energy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from experiments.arrivals import ArrivalConfig
from experiments.attribution import attribute
from experiments.energy import EnergyMeter
from experiments.metrics import compute_summary
from experiments.schema import (
    EnergySection,
    Record,
    RunConfig,
    RunMetadata,
    RunResult,
    StageTimes,
    WorkloadConfig,
)
from monitor import SimulatedNvmlBackend
from monitor.clock import VirtualClock

S = 1_000_000_000
A_J_PER_TOKEN = 0.05  # W per (prompt token/s)
B_W_PER_SEQ = 40.0
X_W = {0: 60.0, 1: 100.0}  # W per KV transfer in flight, prefill GPU and decode GPU
IDLE_W = {0: 90.0, 1: 70.0}
# (sent, first token, end) in s after the base, prompt tokens, output tokens
COLOCATED = [
    (0.0, 0.4, 1.6, 2000, 60),
    (0.3, 0.8, 2.2, 1200, 70),
    (0.9, 1.2, 2.0, 3000, 40),
    (1.5, 1.8, 3.0, 800, 60),
    (2.1, 2.6, 3.2, 1600, 30),
]
# P/D: (prefill leg start, end, transfer end = first decode chunk, decode end), prompt, output
PD = [
    (0.0, 0.4, 0.6, 1.8, 2000, 60),
    (0.3, 0.7, 1.0, 2.4, 1200, 70),
    (0.8, 1.1, 1.3, 2.2, 3000, 40),
    (1.6, 1.9, 2.2, 3.1, 800, 60),
]
SPAN_S = 3.4


def _record(i: int, sent: int, first: int, end: int, prompt: int, out: int) -> Record:
    return Record(
        index=i,
        sent_mono_ns=sent,
        sent_epoch_ns=sent,
        first_byte_mono_ns=first,
        first_token_mono_ns=first,
        end_mono_ns=end,
        end_epoch_ns=end,
        chunk_mono_ns=[int(t) for t in np.linspace(first, end, out)],
        prompt_tokens=prompt,
        completion_tokens=out,
        status=200,
        ok=True,
    )


def _measure(
    tmp_path: Path, roles: dict[int, str], power: Callable[[int, float], float]
) -> tuple[EnergySection, int]:
    """Run the real meter over simulated GPUs whose power `power(gpu, seconds after base)` plants; returns
    the energy section and the base (monotonic ns) the planted activity is relative to."""
    base: list[int] = []
    backend: SimulatedNvmlBackend

    def trace(gpu: int, t: float) -> float:
        if not base:
            return IDLE_W[gpu]
        return power(gpu, (backend.t0 + t) - base[0] / S)

    clock = VirtualClock()
    backend = SimulatedNvmlBackend(clock=clock, n_gpus=len(roles), power_w=trace, idle_power_w=IDLE_W[0])
    meter = EnergyMeter(
        list(roles), roles, 0.02, backend, tmp_path / "power.csv", rapl_root=tmp_path / "none"
    )
    meter.start()
    meter.measure_idle(1.0)
    meter.begin()
    base.append(clock.monotonic_ns() + S // 5)
    clock.sleep(SPAN_S + 0.4)  # 0.2 s to the base, the planted activity, 0.2 s after
    meter.end()
    meter.stop()
    return meter.section(), base[0]


def _result(tmp_path: Path, mode: str, records: list[Record], energy: EnergySection) -> RunResult:
    config = RunConfig(
        mode=mode,
        endpoint="http://127.0.0.1:1",
        workload=WorkloadConfig(kind="random", num_requests=len(records), input_len=1, output_len=1, seed=0),
        arrival=ArrivalConfig(kind="poisson", rate=1.0, seed=0),
    )
    res = RunResult(
        metadata=RunMetadata(mode=mode, endpoint=config.endpoint, config=config),
        status="complete",
        summary=compute_summary(records),
        energy=energy,
        records=records,
    )
    res.save(tmp_path)  # attribution finds power.csv beside result.json, as for a real run
    return RunResult.load(tmp_path)


def _closure(res: RunResult) -> None:
    """idle + attributed parts = counter energy per GPU (0.5%), and the records hold all of it."""
    assert res.energy is not None and res.energy.attribution is not None
    att = res.energy.attribution
    for g in att.gpus:
        assert g.idle_j + g.prefill_j + g.decode_j + g.transfer_j == pytest.approx(g.energy_j, rel=0.005)
        gpu = res.energy.gpu(g.index)
        assert gpu is not None and g.energy_j == gpu.energy_j
        assert g.idle_j == pytest.approx(
            IDLE_W[g.index] * gpu.duration_s, rel=0.04
        )  # idle: 100 ms counter steps
    records_j = sum(r.energy.total_j for r in res.records if r.energy is not None)
    assert records_j + att.idle_j == pytest.approx(att.energy_j, rel=0.005)


def test_colocated_split_recovers_planted_prefill_and_decode_energy(tmp_path: Path) -> None:
    def power(gpu: int, t: float) -> float:
        w = IDLE_W[gpu]
        for sent, first, end, prompt, _ in COLOCATED:
            if sent <= t < first:
                w += A_J_PER_TOKEN * prompt / (first - sent)
            elif first <= t < end:
                w += B_W_PER_SEQ
        return w

    energy, base = _measure(tmp_path, {0: "serving"}, power)
    records = [
        _record(i, base + int(s * S), base + int(f * S), base + int(e * S), p, o)
        for i, (s, f, e, p, o) in enumerate(COLOCATED)
    ]
    res = _result(tmp_path, "traditional", records, energy)
    res.energy.attribution = attribute(res)  # type: ignore[union-attr]
    _closure(res)
    for r, (_, f, e, prompt, _) in zip(res.records, COLOCATED, strict=True):
        assert r.energy is not None and r.energy.transfer_j is None
        assert r.energy.prefill_j == pytest.approx(A_J_PER_TOKEN * prompt, rel=0.12)
        assert r.energy.decode_j == pytest.approx(B_W_PER_SEQ * (e - f), rel=0.12)
    att = res.energy.attribution  # type: ignore[union-attr]
    assert att is not None
    total_prompt = sum(c[3] for c in COLOCATED)
    assert att.totals.prefill_j == pytest.approx(A_J_PER_TOKEN * total_prompt, rel=0.05)
    assert att.totals.decode_j == pytest.approx(B_W_PER_SEQ * sum(c[2] - c[1] for c in COLOCATED), rel=0.05)
    assert att.totals.prefill_j_per_prompt_token == pytest.approx(A_J_PER_TOKEN, rel=0.05)
    assert att.prefill_j_per_prompt_token.p50 == pytest.approx(A_J_PER_TOKEN, rel=0.12)
    fit = att.gpus[0].fit
    assert fit is not None and fit.r2 is not None and fit.r2 > 0.9
    assert fit.coef_w["prefill_tok_per_s"] == pytest.approx(A_J_PER_TOKEN, rel=0.15)


def test_pd_roles_decide_the_phase_and_transfers_are_charged_on_both_gpus(tmp_path: Path) -> None:
    def power(gpu: int, t: float) -> float:
        w = IDLE_W[gpu]
        for p0, p1, x1, end, prompt, _ in PD:
            if gpu == 0 and p0 <= t < p1:
                w += A_J_PER_TOKEN * prompt / (p1 - p0)
            if p1 <= t < x1:
                w += X_W[gpu]
            if gpu == 1 and x1 <= t < end:
                w += B_W_PER_SEQ
        return w

    energy, base = _measure(tmp_path, {0: "prefill", 1: "decode"}, power)

    def ns(s: float) -> int:
        return base + int(s * S)

    records = []
    for i, (p0, p1, x1, end, prompt, out) in enumerate(PD):
        r = _record(i, ns(p0) - 1000, ns(x1), ns(end), prompt, out)
        r.stages = StageTimes(
            t_prefill_start_mono_ns=ns(p0),
            t_prefill_end_mono_ns=ns(p1),
            t_decode_send_mono_ns=ns(p1),
            t_decode_first_chunk_mono_ns=ns(x1),
            t_decode_end_mono_ns=ns(end),
        )
        records.append(r)
    res = _result(tmp_path, "disagg", records, energy)
    res.energy.attribution = attribute(res)  # type: ignore[union-attr]
    _closure(res)
    att = res.energy.attribution  # type: ignore[union-attr]
    assert att is not None
    by_gpu = {g.index: g for g in att.gpus}
    assert by_gpu[0].decode_j == 0.0 and by_gpu[1].prefill_j == 0.0  # the role decides the phase
    for r, (_, p1, x1, end, prompt, _) in zip(res.records, PD, strict=True):
        assert r.energy is not None and r.energy.transfer_j is not None
        assert r.energy.prefill_j == pytest.approx(A_J_PER_TOKEN * prompt, rel=0.12)
        assert r.energy.transfer_j == pytest.approx((X_W[0] + X_W[1]) * (x1 - p1), rel=0.15)
        assert r.energy.decode_j == pytest.approx(B_W_PER_SEQ * (end - x1), rel=0.12)
    assert att.totals.transfer_j == pytest.approx(
        sum((X_W[0] + X_W[1]) * (c[2] - c[1]) for c in PD), rel=0.06
    )
    assert att.transfer_j is not None and att.transfer_j.count == len(PD)


BUSY_W = 150.0  # drawn whenever anything is in flight, whatever it is (an engine stepping)
# A prefill's GPU time: the run's 5th-percentile seconds per prompt token (of 0.4/2000, 0.5/1200,
# 0.3/3000, 0.3/800, 0.5/1600: 1e-4 + 0.2 x (2e-4 - 1e-4)) x its tokens, over its time in flight.
PER_TOKEN_S = 1.2e-4
PREFILL_BUSY = [min(1.0, PER_TOKEN_S * p / (f - s)) for s, f, _, p, _ in COLOCATED]  # 0.6 .. 1.0


def _expected_with_busy_base(step_s: float = 0.0005) -> tuple[list[float], list[float]]:
    """The planted joules by hand-stepping time: prefill A x tokens and decode B x time, plus the busy
    power split as the method states: prefills take the share of GPU time they compute (their busy sum,
    at most 1), decodes the rest equally; a phase alone takes all."""
    pre = [A_J_PER_TOKEN * c[3] for c in COLOCATED]
    dec = [B_W_PER_SEQ * (c[2] - c[1]) for c in COLOCATED]
    for t in np.arange(0.0, SPAN_S, step_s) + step_s / 2:
        pf = [i for i, c in enumerate(COLOCATED) if c[0] <= t < c[1]]
        dc = [i for i, c in enumerate(COLOCATED) if c[1] <= t < c[2]]
        occ = min(1.0, sum(PREFILL_BUSY[i] for i in pf))
        pre_share = occ if dc else (1.0 if pf else 0.0)
        for i in pf:
            pre[i] += BUSY_W * step_s * pre_share * PREFILL_BUSY[i] / sum(PREFILL_BUSY[j] for j in pf)
        for i in dc:
            dec[i] += BUSY_W * step_s * (1.0 - pre_share) / len(dc)
    return pre, dec


def test_busy_power_is_split_by_gpu_time_not_charged_to_the_longest_phase(tmp_path: Path) -> None:
    def power(gpu: int, t: float) -> float:
        w = IDLE_W[gpu]
        busy = False
        for sent, first, end, prompt, _ in COLOCATED:
            if sent <= t < first:
                w += A_J_PER_TOKEN * prompt / (first - sent)
                busy = True
            elif first <= t < end:
                w += B_W_PER_SEQ
                busy = True
        return w + (BUSY_W if busy else 0.0)

    energy, base = _measure(tmp_path, {0: "serving"}, power)
    records = [
        _record(i, base + int(s * S), base + int(f * S), base + int(e * S), p, o)
        for i, (s, f, e, p, o) in enumerate(COLOCATED)
    ]
    res = _result(tmp_path, "traditional", records, energy)
    res.energy.attribution = attribute(res)  # type: ignore[union-attr]
    _closure(res)
    pre, dec = _expected_with_busy_base()
    got_pre = [r.energy.prefill_j for r in res.records if r.energy is not None]
    got_dec = [r.energy.decode_j for r in res.records if r.energy is not None]
    assert sum(got_pre) == pytest.approx(sum(pre), rel=0.08)
    assert sum(got_dec) == pytest.approx(sum(dec), rel=0.08)
    for i in range(len(COLOCATED)):
        assert got_pre[i] == pytest.approx(pre[i], rel=0.2), i
        assert got_dec[i] == pytest.approx(dec[i], rel=0.2), i

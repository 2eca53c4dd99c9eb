"""`python -m planner profile` against a fake vLLM server: points, limits, power states, KV sources."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.prefill_inflation import overlap_evidence
from analysis.runs import load_runs
from planner.probe import ProbeError, Stream, steady_gaps
from planner.profile_model import load_profile
from tests.planner.fake_vllm import FRONTEND_S, PER_TOKEN_S, PREFILL_S, fake_vllm

ROOT = Path(__file__).resolve().parents[2]
PD_RESULT = ROOT / "results" / "h200x2" / "20261122-044143-disagg-rate4"


def profile_args(url: str, out: Path, *extra: str) -> list[str]:
    """The small profile every test here runs (later flags override earlier ones)."""
    return [
        sys.executable, "-m", "planner", "profile", "--endpoint", url, "--output", str(out),
        "--prefill-sizes", "64,256,1024,4096", "--prefill-repeats", "2", "--decode-batches", "1,2,4",
        "--decode-contexts", "32,128", "--decode-tokens", "12", "--idle-seconds", "0",
        "--prefill-power-seconds", "0", *extra,
    ]  # fmt: skip


def profile_cmd(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        profile_args(url, out, *extra), cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_profile_of_a_server_without_nvml(tmp_path: Path) -> None:
    with fake_vllm() as url:
        proc = profile_cmd(url, tmp_path / "p.json", "--monitor", "none")
    assert proc.returncode == 0, proc.stderr
    assert "prefill   4096" not in proc.stdout and "skipped (server max_model_len" in proc.stdout
    prof = load_profile(tmp_path / "p.json")
    assert [p.prompt_tokens for p in prof.prefill_points] == [64, 256, 1024]  # usage counts, 4096 > max len
    assert all(len(p.samples) == 2 for p in prof.prefill_points)
    assert [(p.batch, round(p.context_tokens)) for p in prof.decode_points][:2] == [(1, 32 + 6), (1, 128 + 6)]
    assert len(prof.decode_points) == 6 and all(p.gaps > 0 for p in prof.decode_points)
    assert prof.engine.kv_capacity_tokens == 4000 * 16 and prof.engine.max_num_batched_tokens == 2048
    assert prof.provenance.model == "fake-model" and prof.provenance.vllm_version == "fake-0.1"
    assert not prof.power.available and "--monitor none" in (prof.power.reason or "")
    assert "default" in prof.kv_transfer.source
    assert prof.prefill.fit.n_points == 3
    # the fake's histograms say 4 ms of every TTFT is its API server: split off the prefill fit
    assert prof.frontend.delay_s(1024) == pytest.approx(FRONTEND_S, abs=1e-4)
    assert "TTFT - queue - prefill" in prof.frontend.source
    alone = prof.prefill_points[-1]
    assert prof.prefill.request_s(alone.prompt_tokens, 2048) < alone.latency_s - 0.9 * FRONTEND_S


def test_a_sizes_first_use_stays_out_of_its_prefill_point(tmp_path: Path) -> None:
    """A kernel compiled at a size's first use (1 s here: well above what a busy host adds to a sleep) is
    paid by the warm-up prompt, not measured."""
    compile_s = 1.0
    for warmup, cold in (("0", True), ("1", False)):
        with fake_vllm(first_use_s=compile_s) as url:
            out = tmp_path / f"p{warmup}.json"
            proc = profile_cmd(url, out, "--monitor", "none", "--prefill-warmup", warmup)
        assert proc.returncode == 0, proc.stderr
        prof = load_profile(out)
        for p in prof.prefill_points:  # the fake's formula (sleeps only run long), + half the compile if cold
            formula_s = FRONTEND_S + PREFILL_S + PER_TOKEN_S * p.prompt_tokens
            if cold:  # median of 2 samples, one of them the first use
                assert p.latency_s > formula_s + compile_s / 2, p
            else:
                assert formula_s < p.latency_s < formula_s + compile_s / 3, p
    # the warm-up's own time is in the log: the compile and the formula's, one per size
    warmups = [float(ms) for ms in re.findall(r"warm-up ([0-9.]+) ms", proc.stdout)]
    assert len(warmups) == 3 and all(1e3 * compile_s < ms < 1e3 * (compile_s + 0.5) for ms in warmups)


def test_decode_points_whose_answers_came_in_one_read_are_retried_until_they_have_gaps(
    tmp_path: Path,
) -> None:
    """The CI failure of 2026-12-05: a starved server's streams of 16 and then 64 tokens each came in one
    read, and the profiler gave up after one retry. Here streams under 100 tokens come whole: 12 and then
    48 tokens (4x) have no gap; the third try, 192 tokens, has."""
    with fake_vllm(whole_below=100) as url:
        proc = profile_cmd(url, tmp_path / "p.json", "--monitor", "none", "--decode-batches", "1,2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for batch in (1, 2):
        for ctx in (32, 128):
            tries = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"  decode B={batch} C={ctx}:")]
            assert [t.split("again with ")[1] for t in tries] == [f"{n} tokens per stream" for n in (48, 192)]
    prof = load_profile(tmp_path / "p.json")
    assert len(prof.decode_points) == 4 and all(p.gaps >= 191 for p in prof.decode_points)
    # the fake's step: STEP_S + PER_SEQ_S * open streams (batch 1: 2.5 ms; sleeps only run long)
    one = [p.step_s for p in prof.decode_points if p.batch == 1]
    assert all(0.0025 <= s < 0.0025 * 1.5 for s in one), one


def test_lengthened_streams_that_fail_skip_their_point_but_the_streams_asked_for_stop_the_profile(
    tmp_path: Path,
) -> None:
    """Streams of more than 100 tokens are refused (HTTP 500). Whole answers under 100 tokens: the third
    try's 192 tokens, the profiler's choice, fail and the point is skipped with why; no point is left to
    fit (exit 2). Asking for 150 tokens ourselves: the first try fails and the profile stops (exit 1)."""
    with fake_vllm(whole_below=100, fail_above=100) as url:
        proc = profile_cmd(url, tmp_path / "p.json", "--monitor", "none", "--decode-batches", "1")
        asked = profile_cmd(url, tmp_path / "q.json", "--monitor", "none", "--decode-tokens", "150")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    skipped = [ln for ln in proc.stdout.splitlines() if "skipped (the streams of 192 tokens failed" in ln]
    assert len(skipped) == 2 and "HTTP 500" in skipped[0] and "need at least" in proc.stderr
    assert asked.returncode == 1 and "HTTP 500" in asked.stderr and "failed" in asked.stderr
    assert asked.stderr.count("\n") == 1 and not (tmp_path / "q.json").exists()


def test_profile_with_the_simulated_monitor_fills_every_power_state(tmp_path: Path) -> None:
    with fake_vllm() as url:
        proc = profile_cmd(
            url, tmp_path / "p.json", "--monitor", "sim", "--idle-seconds", "0.6",
            "--prefill-power-seconds", "0.8", "--decode-batches", "1,2", "--decode-contexts", "32,64",
            "--decode-tokens", "300",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    prof = load_profile(tmp_path / "p.json")
    states = sorted({p.state for p in prof.power_points})
    assert states == ["decode", "idle", "prefill"], prof.power_points
    assert prof.power.available and "simulated" in prof.provenance.notes
    assert prof.provenance.gpu == "Simulated NVIDIA H200"


def test_kv_transfer_from_a_measured_pd_pair(tmp_path: Path) -> None:
    with fake_vllm() as url:
        proc = profile_cmd(url, tmp_path / "p.json", "--monitor", "none", "--pd-result", str(PD_RESULT),
                           "--kv-bytes-per-token", "131072")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    prof = load_profile(tmp_path / "p.json")
    assert str(PD_RESULT) in prof.kv_transfer.source
    assert len(prof.kv_points) == 200 and {p.prompt_tokens for p in prof.kv_points} == {2048}
    median_first_chunk_s = 0.0266  # results/h200x2 README: decode first chunk ~28 ms
    assert 0 < prof.kv_transfer.transfer_s(2048) < median_first_chunk_s * 1.05
    # the prefill legs that overlapped no other, against a 2048-token prompt alone on the (fast) fake
    evidence = overlap_evidence(load_runs([PD_RESULT])[0])
    assert evidence is not None and evidence.solo_median_ms is not None
    expected = evidence.solo_median_ms / 1e3 - prof.client_prefill_s(2048)
    assert prof.kv_transfer.prefill_overhead_s == pytest.approx(expected) and expected > 0.02
    assert str(PD_RESULT) in prof.kv_transfer.prefill_overhead_source
    assert "overlapped no other" in prof.kv_transfer.prefill_overhead_source
    # its overlapping pairs ended together: P2P NCCL's prefill instance holds a finished prompt
    assert evidence.pairs >= 5 and evidence.pair_end_gap_ms is not None and evidence.pair_end_gap_ms < 5
    assert prof.kv_transfer.prefill_hold and "ended a median" in prof.kv_transfer.prefill_hold_source


def test_planner_kv_redoes_the_kv_side_offline(tmp_path: Path) -> None:
    with fake_vllm() as url:
        assert profile_cmd(url, tmp_path / "p.json", "--monitor", "none").returncode == 0
    before = load_profile(tmp_path / "p.json")
    assert not before.kv_transfer.prefill_hold and not before.kv_points
    proc = subprocess.run([sys.executable, "-m", "planner", "kv", "--profile", str(tmp_path / "p.json"),
                           "--pd-result", str(PD_RESULT), "--output", str(tmp_path / "q.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    after = load_profile(tmp_path / "q.json")
    assert after.kv_transfer.prefill_hold and len(after.kv_points) == 200
    assert after.prefill == before.prefill and after.decode_points == before.decode_points
    assert "planner kv" in after.provenance.notes


def test_unreachable_endpoint_is_one_line(tmp_path: Path) -> None:
    proc = profile_cmd("http://127.0.0.1:9", tmp_path / "p.json", "--monitor", "none")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error:") and "is a vLLM server running" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_steady_gaps_keep_only_steps_where_every_stream_decodes() -> None:
    a = Stream([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    b = Stream([2.5, 3.5, 4.5, 5.5, 6.5])  # starts late (its prefill), ends late
    step, ctx, n = steady_gaps([a, b], 100)
    # window [2.5, 5.0]: a's gaps 3-4, 4-5 (k = 4, 5) and b's 2.5-3.5, 3.5-4.5 (k = 1, 2)
    assert (step, n) == (1.0, 4) and ctx == pytest.approx(100 + np.mean([4, 5, 1, 2]))
    with pytest.raises(ProbeError, match="decode-tokens"):
        steady_gaps([Stream([0.0, 1.0]), Stream([2.0, 3.0])], 10)

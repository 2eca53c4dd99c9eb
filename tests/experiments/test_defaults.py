"""`run_experiment.py --mode disagg` with no other flag: defaults by what the endpoint is (a CPU server of
the tiny model, a launch plan without GPUs, a CPU build's /version; else a GPU one), printed at the
start with everything else that will run. Against the fake server, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from experiments.defaults import CPU, GPU, defaults_for
from experiments.model_dir import write_model_dir
from experiments.runner import fetch_models
from experiments.schema import RunResult
from fake_upstream import FakeUpstream


class CpuBuild(FakeUpstream):
    """A server of vLLM's CPU build from source, whose version says so."""

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.11.0+cpu"})


REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "run_experiment.py"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    with FakeUpstream(root=str(write_model_dir(tmp_path_factory.mktemp("m") / "tiny"))) as srv:
        yield srv


@pytest.fixture(scope="module")
def big() -> Iterator[FakeUpstream]:
    with FakeUpstream(root="/models/Llama-3.1-8B-Instruct") as srv:  # not here: a GPU host's path
        yield srv


def test_mode_alone_prints_what_runs_with_cpu_defaults(tiny: FakeUpstream, tmp_path: Path) -> None:
    proc = run_cli(["--mode", "disagg", "--endpoint", tiny.url, "--output-dir", str(tmp_path), "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"run_experiment: disagg at {tiny.url}",
        "  workload: random prompts of 256 tokens -> 32 output tokens, 40 requests (+2 warm-up), seed 0",
        "  load:     poisson at 1 req/s",
        "  SLO:      none (no goodput)",
        f"  output:   {tmp_path}/",
        "  CPU defaults for --input-len, --output-len, --num-requests, --rate: it serves the tiny "
        f"config-only model {tiny.root} (a CPU server)",
    ]
    assert not list(tmp_path.iterdir())  # a dry run sends nothing and writes nothing


def test_a_gpu_endpoint_gets_the_frontier_point(big: FakeUpstream, tmp_path: Path) -> None:
    args = ["--mode", "disagg", "--endpoint", big.url, "--output-dir", str(tmp_path), "--dry-run"]
    proc = run_cli([*args, "--slo", "ttft=1000,tpot=50"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "random prompts of 2048 tokens -> 256 output tokens, 200 requests" in out
    assert "poisson at 4 req/s" in out and "SLO:      ttft 1000 ms, tpot 50 ms" in out
    assert "GPU defaults for --input-len, --output-len, --num-requests, --rate: no sign of a CPU" in out


def test_given_flags_are_kept_and_the_rest_filled(big: FakeUpstream, tmp_path: Path) -> None:
    args = ["--endpoint", big.url, "--output-dir", str(tmp_path), "--dry-run", "--input-len", "64"]
    proc = run_cli([*args, "--sweep-rates", "2,8"])
    assert proc.returncode == 0, proc.stderr
    assert "of 64 tokens -> 256 output tokens, 200 requests" in proc.stdout
    assert "poisson at 2, 8 req/s (one run each)" in proc.stdout
    assert "GPU defaults for --output-len, --num-requests:" in proc.stdout  # a sweep needs no rate


def test_nothing_left_out_asks_nothing(tmp_path: Path) -> None:
    nobody = "http://127.0.0.1:9"  # nothing listens: no default is looked up
    args = ["--endpoint", nobody, "--input-len", "8", "--output-len", "2", "--num-requests", "1"]
    proc = run_cli([*args, "--rate", "1", "--dry-run", "--output-dir", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert "defaults" not in proc.stdout and "poisson at 1 req/s" in proc.stdout


def test_a_default_run_records_its_defaults(tiny: FakeUpstream, tmp_path: Path) -> None:
    args = ["--mode", "disagg", "--endpoint", tiny.url, "--output-dir", str(tmp_path), "--run-name", "d"]
    proc = run_cli([*args, "--num-requests", "3", "--rate", "50", "--monitor", "none", "--idle-seconds", "0"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"run_experiment: disagg at {tiny.url}\n")
    res = RunResult.load(tmp_path / "d")
    cfg = res.metadata.config
    assert (cfg.workload.input_len, cfg.workload.output_len, cfg.workload.num_requests) == (256, 32, 3)
    assert cfg.defaults is not None and cfg.defaults.startswith("CPU defaults for --input-len, --output-len:")
    assert all(r.prompt_tokens == 256 and r.completion_tokens == 32 for r in res.records)


def test_a_launch_plan_without_gpus_means_cpu(big: FakeUpstream, tmp_path: Path) -> None:
    plan = {"endpoint": big.url, "instances": [{"name": "server", "url": big.url, "gpu": None}]}
    (tmp_path / "launch.json").write_text(json.dumps(plan))
    models = fetch_models(big.url)
    assert defaults_for(big.url, models)[0] == GPU
    found, why = defaults_for(big.url, models, tmp_path)
    assert found == CPU and "put no instance on a GPU" in why
    plan["instances"][0]["gpu"] = "0"
    (tmp_path / "launch.json").write_text(json.dumps(plan))
    assert defaults_for(big.url, models, tmp_path)[0] == GPU


def test_a_cpu_build_says_so_in_its_version() -> None:
    with CpuBuild(root="/models/Llama-3.1-8B-Instruct") as srv:
        found, why = defaults_for(srv.url, fetch_models(srv.url))
    assert found == CPU and "0.11.0+cpu" in why

"""The runner end to end on the CPU: run_experiment.py against a fake OpenAI server with the simulated
NVML monitor, read back through the schema; and its helpers that need no server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from experiments.model_dir import write_model_dir
from experiments.runner import cache_warnings
from experiments.schema import RECORDS_FILE, SCHEMA_VERSION, RunResult
from fake_upstream import FakeBehavior, FakeUpstream

REPO = Path(__file__).resolve().parents[2]
P = "vllm:prefix_cache"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model") / "m")


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "run_experiment.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def smoke_args(url: str, out: Path) -> list[str]:
    return [
        "--endpoint", url,
        "--input-len", "8",
        "--output-len", "5",
        "--num-requests", "12",
        "--warmup", "2",
        "--monitor", "sim",
        "--monitor-interval", "0.05",
        "--idle-seconds", "0.3",
        "--gpu-ids", "0,1",
        "--slo", "ttft=60000,tpot=60000",
        "--output-dir", str(out),
    ]  # fmt: skip


def test_a_run_reads_back_through_the_schema(model_dir: Path, tmp_path: Path) -> None:
    with FakeUpstream(FakeBehavior(chunk_interval_s=0.005), root=str(model_dir)) as srv:
        proc = run_cli([*smoke_args(srv.url, tmp_path), "--rate", "40", "--run-name", "smoke"])
    assert proc.returncode == 0, proc.stderr
    res = RunResult.load(tmp_path / "smoke")
    assert res.complete and res.status == "complete" and res.error is None
    meta = res.metadata
    assert (meta.mode, meta.model, meta.config.arrival.rate, meta.config.sweep) == (
        "traditional",
        "fake-model",
        40,
        None,
    )
    assert meta.serving_setup is not None and meta.serving_setup.kind == "single"
    assert meta.setup_name == "1 instance"
    assert len(res.records) == 14 and len(res.measured()) == 12
    s = res.summary
    assert s is not None and (s.completed, s.failed, s.good_requests) == (12, 0, 12)
    assert s.total_output_tokens == 60 and s.itl_ms.count == 12 * 4

    e = res.energy
    assert e is not None and e.available and e.idle_seconds == 0.3
    assert [(g.index, g.role) for g in e.gpus] == [(0, "serving"), (1, "idle")]
    assert all(g.idle_power_w and g.static_j is not None for g in e.gpus)
    assert e.monitor is not None and e.monitor.backend and e.monitor.sample_count > 0
    assert e.timeline is not None and e.timeline.epoch_ns

    doc = orjson.loads((tmp_path / "smoke" / "result.json").read_bytes())
    assert doc["schema_version"] == SCHEMA_VERSION and doc["complete"] is True
    totals = doc["energy"]["totals"]["all_gpus"]
    assert totals["j_per_request"] == pytest.approx(totals["energy_j"] / s.completed)
    assert totals["j_per_output_token"] == pytest.approx(totals["energy_j"] / s.total_output_tokens)
    assert doc["energy"]["totals"]["serving_gpus"]["gpus"] == [0]
    stored_once = doc["energy"]["monitor"].keys() & {"windows", "idle_power_w", "static_dynamic_split"}
    assert not stored_once and "idle_baseline" not in doc["energy"]
    lines = [orjson.loads(x) for x in (tmp_path / "smoke" / RECORDS_FILE).read_bytes().splitlines()]
    assert lines == doc["records"]
    assert all(x["ttft_ms"] > 0 and x["succeeded"] for x in lines if x["measured"])
    assert "result:" in proc.stdout and "12 ok, 0 failed" in proc.stdout


def test_a_sweep_records_its_place_in_every_run(model_dir: Path, tmp_path: Path) -> None:
    with FakeUpstream(root=str(model_dir)) as srv:
        args = [*smoke_args(srv.url, tmp_path), "--monitor", "none", "--idle-seconds", "0"]
        proc = run_cli([*args, "--sweep-rates", "50,100", "--seed", "3"])
    assert proc.returncode == 0, proc.stderr
    runs = [RunResult.load(p) for p in sorted(tmp_path.glob("*/result.json"))]
    assert len(runs) == 2
    sweeps = [r.metadata.config.sweep for r in runs]
    assert all(sw is not None and sw.id == sweeps[0].id and sw.rates == [50, 100] for sw in sweeps)  # type: ignore[union-attr]
    assert sorted((sw.rate, sw.seed_offset) for sw in sweeps) == [(50, 0), (100, 1)]  # type: ignore[union-attr]
    assert sorted(r.metadata.config.workload.seed for r in runs) == [3, 4]  # fresh prompts per load
    assert all(r.energy is not None and not r.energy.available and r.energy.reason for r in runs)


def test_reused_prompts_are_flagged() -> None:
    deltas = {"http://p": {f"{P}_queries_total{{}}": 1000.0, f"{P}_hits_total{{}}": 990.0}}
    (w,) = cache_warnings("random", deltas)
    assert (w.code, w.observed, w.threshold) == ("prefix_cache", 0.99, 0.05)
    assert "http://p" in w.message and "99%" in w.message and "--seed" in w.message


def test_fresh_prompts_and_transferred_kv_are_not_flagged() -> None:
    deltas = {
        "http://p": {f"{P}_queries_total{{}}": 1000.0},
        # decode's KV arriving from prefill is counted as external hits, not local ones
        "http://d": {f"{P}_queries_total{{}}": 1000.0, "vllm:external_prefix_cache_hits_total{}": 1000.0},
    }
    assert cache_warnings("random", deltas) == []


def test_shared_prefix_workloads_are_not_flagged() -> None:
    deltas = {"http://p": {f"{P}_queries_total{{}}": 1000.0, f"{P}_hits_total{{}}": 990.0}}
    assert cache_warnings("fixed", deltas) == [] and cache_warnings("sharegpt", deltas) == []

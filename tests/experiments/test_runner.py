"""The runner end to end on the CPU: run_experiment.py against a fake OpenAI server with the simulated
NVML monitor, read back through the schema; and its helpers that need no server."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from experiments.model_dir import write_model_dir
from experiments.runner import cache_warnings
from experiments.schema import RECORDS_FILE, SCHEMA_VERSION, RunResult, ServerMetrics
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
    att = e.attribution  # every run attributes its counter energy (sim GPUs: power follows no request)
    assert att is not None and att.worst_closure_error is not None and att.worst_closure_error < 0.005
    assert [g.role for g in att.gpus] == ["serving", "idle"] and att.gpus[1].idle_j == att.gpus[1].energy_j
    assert [r.index for r in res.records if r.energy is not None] == [r.index for r in res.measured()]
    assert e.host is not None and (e.host.available or e.host.reason)  # RAPL, or why not

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


def _servers(deltas: dict[str, dict[str, float]]) -> dict[str, ServerMetrics]:
    return {url: ServerMetrics(deltas=d) for url, d in deltas.items()}


def test_reused_prompts_are_flagged() -> None:
    servers = _servers({"http://p": {f"{P}_queries_total{{}}": 1000.0, f"{P}_hits_total{{}}": 990.0}})
    assert servers["http://p"].prefix_cache_hit_rate == 0.99
    (w,) = cache_warnings("random", servers)
    assert (w.code, w.observed, w.threshold) == ("prefix_cache", 0.99, 0.05)
    assert "http://p" in w.message and "99%" in w.message and "--seed" in w.message


def test_a_traces_own_prefix_reuse_is_expected_but_not_more() -> None:
    servers = _servers({"http://p": {f"{P}_queries_total{{}}": 1000.0, f"{P}_hits_total{{}}": 400.0}})
    assert cache_warnings("trace", servers, expected_reuse=0.38) == []  # 40% hits, 38% reused: within 5 pts
    (w,) = cache_warnings("trace", servers, expected_reuse=0.30)
    assert (
        "40%" in w.message
        and "the trace itself reuses 30%" in w.message
        and w.threshold == pytest.approx(0.35)
    )
    assert cache_warnings("trace", servers) != []  # a trace without hash ids reuses nothing


def test_fresh_prompts_and_transferred_kv_are_not_flagged() -> None:
    servers = _servers(
        {
            "http://p": {f"{P}_queries_total{{}}": 1000.0},
            # decode's KV arriving from prefill is counted as external hits, not local ones
            "http://d": {f"{P}_queries_total{{}}": 1000.0, "vllm:external_prefix_cache_hits_total{}": 1000.0},
        }
    )
    assert cache_warnings("random", servers) == []
    assert cache_warnings("random", {"http://x": ServerMetrics(error="unreachable")}) == []


def test_shared_prefix_workloads_are_not_flagged() -> None:
    servers = _servers({"http://p": {f"{P}_queries_total{{}}": 1000.0, f"{P}_hits_total{{}}": 990.0}})
    assert cache_warnings("fixed", servers) == [] and cache_warnings("sharegpt", servers) == []


def _trace(path: Path, gaps_s: list[float]) -> Path:
    """A trace of len(gaps_s) + 1 requests of 8 -> 3 tokens, spaced by `gaps_s`."""
    times = [0.0]
    for gap in gaps_s:
        times.append(times[-1] + gap)
    path.write_text("timestamp_s,input_length,output_length\n" + "".join(f"{t},8,3\n" for t in times))
    return path


@pytest.mark.parametrize(
    ("keepalive_s", "gap_s", "retried"),
    [
        # Idle gaps past the client's KEEPALIVE_S (2 s), inside the server's 2.5 s: the client never sends on
        # a connection the server may be closing (a client keeping it longer loses requests here).
        (2.5, 2.2, 0),
        # Gaps inside the client's keep-alive but past the race point of a short server keep-alive: the
        # dropped request is sent once more on a new connection and counted, never lost.
        (0.5, 0.45, 3),
    ],
)
def test_no_request_is_lost_to_a_servers_keep_alive_close(
    tmp_path: Path, keepalive_s: float, gap_s: float, retried: int
) -> None:
    trace = _trace(tmp_path / "gaps.csv", [gap_s] * 3)
    model_dir = write_model_dir(tmp_path / "model")
    with FakeUpstream(root=str(model_dir), keepalive_s=keepalive_s) as srv:
        args = [
            "--endpoint", srv.url, "--dataset", str(trace), "--warmup", "0", "--monitor", "none",
            "--idle-seconds", "0", "--output-dir", str(tmp_path / "runs"),
        ]  # fmt: skip
        proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr
    res = RunResult.load(next((tmp_path / "runs").glob("*/result.json")))
    assert res.summary is not None and (res.summary.completed, res.summary.failed) == (4, 0)
    assert srv.dropped == retried and res.summary.retried == retried
    assert [r.retries for r in res.records] == [0] + [1 if retried else 0] * 3
    assert all(r.retry_error and "Disconnected" in r.retry_error for r in res.records if r.retries)
    # trace arrivals by default: the sends kept the trace's gaps
    sends = [r.sent_mono_ns for r in res.records]
    assert all(abs((b - a) / 1e9 - gap_s) < 0.2 for a, b in itertools.pairwise(sends))  # type: ignore[operator]


def test_a_trace_replays_its_own_times_scaled_and_the_dry_run_says_so(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.csv", [1.0, 0.5, 1.5])  # 3 gaps in 3 s: the trace's own 1 req/s
    dry = run_cli(["--dataset", str(trace), "--trace-time-scale", "0.5", "--dry-run", "--num-requests", "4"])
    assert dry.returncode == 0, dry.stderr
    assert "trace arrivals" in dry.stdout and "own times x0.5 (mean 2 req/s offered; own 1)" in dry.stdout
    model_dir = write_model_dir(tmp_path / "model")
    with FakeUpstream(root=str(model_dir)) as srv:
        common = ["--endpoint", srv.url, "--dataset", str(trace), "--warmup", "0", "--monitor", "none"]
        common += ["--idle-seconds", "0", "--output-dir", str(tmp_path / "runs")]
        scaled = run_cli([*common, "--trace-time-scale", "0.5", "--run-name", "scaled"])
        rated = run_cli([*common, "--rate", "3", "--run-name", "rated"])  # 3x the trace's own mean
    assert scaled.returncode == 0 and rated.returncode == 0, scaled.stderr + rated.stderr
    for name, gaps in (("scaled", [0.5, 0.25, 0.75]), ("rated", [1 / 3, 1 / 6, 0.5])):
        res = RunResult.load(tmp_path / "runs" / name)
        assert res.metadata.config.arrival.kind == "trace" and res.metadata.trace is not None
        scheduled = [r.scheduled_mono_ns for r in res.records]
        got = [(b - a) / 1e9 for a, b in itertools.pairwise(scheduled)]  # type: ignore[operator]
        assert got == pytest.approx(gaps, abs=1e-3)
        assert res.metadata.trace.offered_rate == pytest.approx(3 / sum(gaps))
        assert res.summary is not None and res.summary.arrival_rate == pytest.approx(3 / sum(gaps), rel=0.1)
    assert "arrived at" in rated.stdout and "mean 3 req/s offered" in rated.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trace-time-scale", "2", "--rate", "4"], "not both: the rate sets the scale"),
        (["--trace-time-scale", "2", "--arrival", "poisson", "--rate", "4"], "--arrival poisson replaces"),
        (["--burstiness", "0.5"], "trace arrivals keep the trace's gaps"),
        (["--trace-start", "10", "--trace-first-row", "2"], "by time (start, duration) or by rows"),
    ],
)
def test_contradictory_trace_flags_are_one_line_errors(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    trace = _trace(tmp_path / "t.csv", [1.0, 1.0])
    proc = run_cli(["--dataset", str(trace), "--dry-run", "--num-requests", "3", *flags])
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_trace_flags_need_a_trace() -> None:
    proc = run_cli(
        ["--trace-time-scale", "2", "--dry-run", "--input-len", "8", "--output-len", "2", "--rate", "1"]
    )
    assert proc.returncode == 2 and "needs a trace workload" in proc.stderr

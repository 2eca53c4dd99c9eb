"""The decode side's first-chunk split and KV transfer cost on committed 2 x H200 runs: P2P NCCL (no
transfer metrics: bytes computed from the model shape, transfer inferred) and NIXL (measured, pull and
push), and the nixl_* series of a /metrics text captured there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.connector_cost import (
    COMPUTED,
    INFERRED,
    KNOWN_SHAPES,
    first_chunk_split,
    model_shape,
    nixl_stats,
)
from analysis.runs import NA, Run, runs_from_results
from experiments import server_metrics
from experiments.schema import RunResult, ServerMetrics

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "h200x2"  # copies of committed runs
PD16 = RUNS / "20261129-203629-disagg-rate16"
FIXTURES = Path(__file__).with_name("fixtures")
NIXL_DECODE_TEXT = FIXTURES / "nixl_metrics_h200_decode.txt"
NIXL_PREFILL_TEXT = FIXTURES / "nixl_metrics_h200_prefill.txt"
NIXL16 = RUNS / "20261130-013010-disagg-rate16"
NIXL_PUSH = RUNS / "push-20261130-014631-disagg-rate12"
NIXL_KV_BYTES = 2048 * 131072  # NIXL moves whole blocks: 128 of 16 tokens, 8B shape
DECODE_URL = "http://127.0.0.1:8200"
PREFILL_URL = "http://127.0.0.1:8100"
KV_BYTES = 2047 * 131072  # D's external tokens per request x the 8B shape's bytes per token


def load(result: RunResult) -> Run:
    return runs_from_results([result])[0]


def raw_mean(result: RunResult, url: str, histogram: str, scale: float = 1000.0) -> float:
    """Mean of a histogram from the stored counter deltas: scale x sum / count (ms by default)."""
    deltas = result.server_metrics[url].deltas
    return scale * deltas[f"vllm:{histogram}_sum{{}}"] / deltas[f"vllm:{histogram}_count{{}}"]


def first_chunk_ms(result: RunResult) -> float:
    """The proxy's decode send -> first chunk, mean over the successful records."""
    return float(np.mean([r.stages.decode_first_chunk_ms for r in result.successes() if r.stages]))


def test_p2p_nccl_bytes_are_computed_and_the_transfer_inferred() -> None:
    result = RunResult.load(PD16)
    split = first_chunk_split(load(result))
    assert split is not None and split.connector == "p2p_nccl" and split.nixl is None
    assert split.kv_bytes_per_request == pytest.approx(KV_BYTES)  # 268 MB
    assert split.bytes_source.startswith(COMPUTED) and "known Llama-3.1-8B shape" in split.bytes_source
    # the load sits inside D's first step: D's prefill time (13.55 ms) - one decode step (D's mean ITL)
    assert split.transfer_source == INFERRED
    step = raw_mean(result, DECODE_URL, "inter_token_latency_seconds")
    transfer = raw_mean(result, DECODE_URL, "request_prefill_time_seconds") - step
    assert split.kv_transfer_ms == pytest.approx(transfer) and split.first_step_ms == pytest.approx(step)
    assert split.gbps == pytest.approx(KV_BYTES / (transfer / 1e3) / 1e9)  # ~40 GB/s
    assert split.d_queue_ms == pytest.approx(raw_mean(result, DECODE_URL, "request_queue_time_seconds"))
    d_ttft = raw_mean(result, DECODE_URL, "time_to_first_token_seconds")
    assert split.outside_d_ms == pytest.approx(first_chunk_ms(result) - d_ttft)
    assert any("exports no transfer metrics" in n for n in split.notes)


def test_nixl_series_parsed_from_a_real_metrics_text() -> None:
    """D's /metrics captured on 2 x H200 after the NIXL sweep (6 x 204 transfers, vLLM 0.26.0)."""
    deltas = server_metrics.delta({}, server_metrics.parse(NIXL_DECODE_TEXT.read_text()))
    stats = nixl_stats(deltas)
    assert stats is not None
    assert stats.transfers == 1224
    assert stats.xfer_ms == pytest.approx(21.055236 / 1224 * 1000)  # 17.2 ms
    assert stats.post_ms == pytest.approx(7.057114 / 1224 * 1000)
    assert stats.bytes_per_transfer == pytest.approx(NIXL_KV_BYTES)  # 128 whole blocks of 16 tokens
    assert stats.descriptors == pytest.approx(2_450_336 / 1224)
    assert (stats.failed_transfers, stats.failed_notifications, stats.kv_expired) == (0, 0, 0)
    assert stats.gbps == pytest.approx(3.28564998144e11 / 21.055236 / 1e9)  # 15.6 GB/s
    assert stats.xfer_p90_ms is not None and 25.0 < stats.xfer_p90_ms <= 50.0  # bucket (25, 50] ms
    assert nixl_stats({"vllm:request_queue_time_seconds_count{}": 3.0}) is None
    # P reads nothing in pull mode: its series are there, every count zero, so its deltas hold none
    parsed = server_metrics.parse(NIXL_PREFILL_TEXT.read_text())
    assert parsed["vllm:nixl_xfer_time_seconds_count{}"] == 0.0
    assert nixl_stats(server_metrics.delta({}, parsed)) is None


def test_nixl_split_measures_the_transfer_inside_the_decode_queue() -> None:
    """A real 1P1D NIXL run (16 req/s, a block pool scattered by the earlier points: 4096 descriptors)."""
    result = RunResult.load(NIXL16)
    split = first_chunk_split(load(result))
    assert split is not None and split.connector == "nixl" and split.nixl is not None
    assert split.transfer_source.startswith("measured") and split.bytes_source.startswith("measured")
    transfer = raw_mean(result, DECODE_URL, "nixl_xfer_time_seconds")  # NIXL's own: 4.831 s / 204
    assert split.kv_transfer_ms == pytest.approx(transfer) == pytest.approx(23.681, abs=1e-3)
    assert split.kv_bytes_per_request == pytest.approx(NIXL_KV_BYTES)
    queue = raw_mean(result, DECODE_URL, "request_queue_time_seconds")
    assert split.d_queue_ms == pytest.approx(queue)
    assert split.queue_beside_transfer_ms == pytest.approx(queue - transfer)
    assert split.first_step_ms == pytest.approx(raw_mean(result, DECODE_URL, "request_prefill_time_seconds"))
    assert split.first_chunk_ms == pytest.approx(first_chunk_ms(result))
    assert split.nixl.descriptors == 835584 / 204 == 4096 and split.nixl.transfers == 204
    assert split.scatter == pytest.approx(1.0)  # 32 layers x 128 blocks, no two adjacent
    unknown = RunResult.load(NIXL16)
    for inst in unknown.metadata.serving_setup.instances:  # type: ignore[union-attr]
        inst.settings.block_size = None
    missing = first_chunk_split(load(unknown))
    assert (
        missing is not None and isinstance(missing.scatter, NA) and "one block size" in missing.scatter.reason
    )
    assert split.gbps == pytest.approx(NIXL_KV_BYTES / 23.681e-3 / 1e9, rel=1e-4)  # 11.3 GB/s
    assert split.nvlink_share == pytest.approx(split.gbps / 300.0)  # type: ignore[operator]
    assert split.notes == []


def test_nixl_push_transfers_are_read_from_the_prefill_side() -> None:
    """A real push-mode run: P writes, so P's series hold the transfers and D's hold none."""
    result = RunResult.load(NIXL_PUSH)
    assert not any("nixl_xfer" in k for k in result.server_metrics[DECODE_URL].deltas)
    split = first_chunk_split(load(result))
    assert split is not None and split.nixl is not None and split.nixl.transfers == 204
    assert split.kv_transfer_ms == pytest.approx(raw_mean(result, PREFILL_URL, "nixl_xfer_time_seconds"))
    descriptors = raw_mean(result, PREFILL_URL, "nixl_num_descriptors", scale=1.0)
    assert split.nixl.descriptors == pytest.approx(descriptors) == pytest.approx(34.35, abs=0.01)
    assert split.scatter == pytest.approx(descriptors / 4096)  # a fresh pool: nearly contiguous
    assert any("prefill side (push" in n for n in split.notes)
    # The same telemetry on D (pull) is read from D, and P's zero series are not taken for it
    deltas = server_metrics.delta({}, server_metrics.parse(NIXL_DECODE_TEXT.read_text()))
    idle = server_metrics.delta({}, server_metrics.parse(NIXL_PREFILL_TEXT.read_text()))
    result.server_metrics[DECODE_URL] = ServerMetrics(
        deltas=deltas | result.server_metrics[DECODE_URL].deltas
    )
    result.server_metrics[PREFILL_URL] = ServerMetrics(deltas=idle)
    split = first_chunk_split(load(result))
    assert split is not None and split.nixl is not None and split.nixl.transfers == 1224
    assert not any("push" in n for n in split.notes)


def test_model_shape_from_config_or_known_or_missing(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    config = {
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "hidden_size": 2048,
    }
    (model / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    result = RunResult.load(PD16)
    result.metadata.model = str(model)
    shape = model_shape(load(result))
    assert not isinstance(shape, NA)
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.bytes_per_token) == (
        28,
        4,
        128,
        2 * 28 * 4 * 128 * 2,
    )
    assert KNOWN_SHAPES["llama-3.1-8b"].bytes_per_token == 131072
    assert KNOWN_SHAPES["llama-3.1-70b-fp8"].bytes_per_token == 2 * 80 * 8 * 128 * 2  # bf16 KV
    result = RunResult.load(PD16)
    result.metadata.model = result.metadata.config.model = "/models/unknown-model"
    for inst in result.metadata.serving_setup.instances:  # type: ignore[union-attr]
        inst.serve_args["model"] = "/models/unknown-model"
    missing = model_shape(load(result))
    assert isinstance(missing, NA) and "model config not found" in missing.reason
    split = first_chunk_split(load(result))
    assert split is not None and isinstance(split.kv_bytes_per_request, NA)

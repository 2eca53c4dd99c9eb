"""A record's derived metrics (vLLM's definitions) on hand-built timelines, and its JSON line."""

from __future__ import annotations

import orjson

from experiments.schema import Record, StageTimes, convert, record_line
from tests.experiments.timelines import record, records


def test_metrics_of_one_timeline() -> None:
    r = records()[0]
    assert r.measured and r.succeeded and r.failure is None
    assert r.ttft_ms == 100.0
    assert r.e2el_ms == 160.0
    assert r.tpot_ms == 20.0
    assert r.itl_ms == [20.0, 30.0, 10.0]
    assert r.itl_req_avg_ms == 20.0
    assert r.tbt_max_ms == 30.0
    assert (r.input_tokens, r.output_tokens) == (10, 4)
    assert r.send_lateness_ms == 2.0


def test_single_token_request_has_no_tpot_and_no_itl() -> None:
    r = records()[2]
    assert (r.ttft_ms, r.e2el_ms, r.tpot_ms) == (30.0, 30.0, None)
    assert (r.itl_ms, r.itl_req_avg_ms, r.tbt_max_ms) == ([], None, None)


def test_failed_request_has_no_latencies_but_keeps_lateness() -> None:
    r = records()[3]
    assert not r.succeeded
    assert r.ttft_ms is None and r.e2el_ms is None and r.tpot_ms is None and r.itl_ms == []
    assert r.input_tokens is None and r.output_tokens is None
    assert r.failure == "HTTP 500: boom"
    assert r.send_lateness_ms == 0.0


def test_ok_stream_without_a_token_is_not_a_success() -> None:
    r = record(5, 0, [], 50, completion=0, prompt=3)
    assert r.ok and not r.succeeded and r.failure == "no output token received"
    r = record(6, 0, [10], 50, completion=1, prompt=3)
    r.end_mono_ns = None
    assert not r.succeeded and r.failure == "record lacks sent_mono_ns or end_mono_ns"


def test_token_count_fallbacks_without_usage() -> None:
    r = record(6, 0, [10, 20, 40], 40, completion=None, prompt=None)
    r.input_tokens_expected = 12
    assert (r.input_tokens, r.output_tokens) == (12, 3)  # chunks counted as tokens
    assert r.tpot_ms == 15.0


def test_warmup_is_not_measured() -> None:
    assert not records()[4].measured and records()[4].succeeded


def test_json_line_carries_fields_and_derived_metrics() -> None:
    r = records()[0]
    r.stages = StageTimes(prefill_ms=60.0, decode_first_chunk_ms=30.0)
    line = record_line(r)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    doc = orjson.loads(line)
    assert doc["chunk_mono_ns"] == r.chunk_mono_ns and doc["ok"] is True
    assert (doc["ttft_ms"], doc["tpot_ms"], doc["e2el_ms"]) == (100.0, 20.0, 160.0)
    assert (doc["itl_req_avg_ms"], doc["tbt_max_ms"], doc["send_lateness_ms"]) == (20.0, 30.0, 2.0)
    assert (doc["measured"], doc["succeeded"], doc["failure"]) == (True, True, None)
    assert doc["stages"]["prefill_ms"] == 60.0
    back = convert(doc, Record, "line")  # derived keys are ignored on the way in
    assert back == r


def test_a_proxy_timing_with_unknown_keys_still_decodes() -> None:
    t = convert({"prefill_ms": 1.5, "new_stage_ms": 3.0}, StageTimes, "timing")
    assert t.prefill_ms == 1.5 and t.decode_total_ms is None

"""Runner helpers that need no server: prefix-cache reuse warnings and the stage split."""

from __future__ import annotations

from experiments.runner import cache_warnings, stage_summary

P = "vllm:prefix_cache"


def test_reused_prompts_are_flagged() -> None:
    deltas = {"http://p": {f"{P}_queries_total{{}}": 1000.0, f"{P}_hits_total{{}}": 990.0}}
    (w,) = cache_warnings("random", deltas)
    assert "http://p" in w and "99%" in w and "--seed" in w


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


def test_stage_split_accounts_for_the_whole_ttft() -> None:
    ms = 1_000_000
    rec = {
        "ok": True,
        "warmup": False,
        "sent_mono_ns": 0,
        "first_token_mono_ns": 100 * ms,
        "stages": {
            "prefill_ms": 60.0,
            "decode_first_chunk_ms": 30.0,
            "decode_total_ms": 500.0,
            "proxy_overhead_ms": 2.0,
        },
    }
    s = stage_summary([rec, {**rec, "warmup": True}])
    assert s["count"] == 1
    assert s["prefill_ms"]["p50"] == 60.0
    assert s["client_side_ms"]["p50"] == 8.0  # 100 - 60 - 30 - 2
    assert stage_summary([{**rec, "stages": None}]) is None

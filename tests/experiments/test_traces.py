"""Trace replay: reading the trace formats, slices, speed, over-length rows and prefix reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.model_dir import Tokenizer, load_tokenizer, write_model_dir
from experiments.traces import (
    TraceReplay,
    is_trace_file,
    prefix_chains,
    select_trace,
    trace_specs,
    trace_workload,
)
from experiments.workloads import WorkloadError


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return load_tokenizer(write_model_dir(tmp_path_factory.mktemp("model")))


def n_tokens(tok: Tokenizer, text: str) -> int:
    return len(tok.encode(text))


# ---- traces ------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,12,30
2023-11-16 18:15:47.1805900,40,1
2023-11-16 18:15:48.9305900,7,8
"""


def test_azure_csv_trace(tok: Tokenizer, tmp_path: Path) -> None:
    path = write(tmp_path / "azure.csv", AZURE)
    specs = trace_workload(path, tok, seed=0)
    assert [(s.input_tokens, s.output_tokens) for s in specs] == [(12, 30), (40, 1), (7, 8)]
    assert [s.arrival_s for s in specs] == pytest.approx([0.0, 0.5, 2.25], abs=1e-6)
    assert [n_tokens(tok, s.prompt) for s in specs] == [12, 40, 7]
    slow = trace_workload(path, tok, seed=0, replay=TraceReplay(time_scale=2.0))
    assert [s.arrival_s for s in slow] == pytest.approx([0.0, 1.0, 4.5], abs=1e-6)
    assert [s.prompt for s in slow] == [s.prompt for s in specs]
    assert len(trace_workload(path, tok, seed=0, replay=TraceReplay(count=2))) == 2


def test_trace_is_seeded(tok: Tokenizer, tmp_path: Path) -> None:
    path = write(tmp_path / "azure.csv", AZURE)
    assert trace_workload(path, tok, seed=1) == trace_workload(path, tok, seed=1)
    assert trace_workload(path, tok, seed=1)[0].prompt != trace_workload(path, tok, seed=2)[0].prompt


def test_generic_csv_traces_are_sorted_by_time(tok: Tokenizer, tmp_path: Path) -> None:
    ms = write(tmp_path / "ms.csv", "timestamp_ms,input_length,output_length\n1500,4,2\n1000,3,9\n4000,5,1\n")
    specs = trace_workload(ms, tok, seed=0)
    assert [(s.arrival_s, s.input_tokens, s.output_tokens) for s in specs] == [
        (0.0, 3, 9),
        (0.5, 4, 2),
        (3.0, 5, 1),
    ]
    secs = write(tmp_path / "s.csv", "timestamp,input_length,output_length,extra\n10,4,2,a\n10.25,3,9,b\n")
    assert [s.arrival_s for s in trace_workload(secs, tok, seed=0)] == [0.0, 0.25]


def test_zero_length_rows_are_left_out_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "z.csv", "timestamp_s,input_length,output_length\n0,4,0\n1,0,3\n2,5,5\n")
    sel = select_trace(path)
    assert [(r.input_len, t) for r, t in zip(sel.rows, sel.arrivals_s, strict=True)] == [(5, 0.0)]
    assert sel.info.zero_length_skipped == 2 and sel.info.rows_read == 1


def test_mooncake_jsonl_shares_prefix_blocks(tok: Tokenizer, tmp_path: Path) -> None:
    rows = [
        {"timestamp": 1000, "input_length": 10, "output_length": 3, "hash_ids": [1, 2, 3]},
        {"timestamp": 1250, "input_length": 12, "output_length": 4, "hash_ids": [1, 2, 9]},
        {"timestamp": 3000, "input_length": 6, "output_length": 5, "hash_ids": []},
        {"timestamp": 3500, "input_length": 9, "output_length": 2},
    ]
    path = write(tmp_path / "mooncake.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    specs = trace_workload(path, tok, seed=0, block_size=4)
    assert [s.index for s in specs] == [0, 1, 2, 3]
    assert [s.arrival_s for s in specs] == [0.0, 0.25, 2.0, 2.5]
    assert [n_tokens(tok, s.prompt) for s in specs] == [10, 12, 6, 9]
    first, second = (tok.encode(s.prompt) for s in specs[:2])
    assert first[:8] == second[:8]  # hash ids 1, 2 -> the same two blocks of 4 tokens
    assert first[8:10] != second[8:10]  # hash id 3 vs 9
    again = trace_workload(path, tok, seed=0, block_size=4)
    assert again == specs


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("gone.csv", None, "trace file not found"),
        ("t.txt", "x", "unknown trace format '.txt'"),
        ("t.csv", "time,in,out\n1,2,3\n", "unrecognised CSV columns \\['time', 'in', 'out'\\]"),
        (
            "t.csv",
            "timestamp,input_length,output_length\n1,2,3\n2,many,3\n",
            "t.csv:3: input_length is not a number",
        ),
        ("t.csv", "timestamp,input_length,output_length\n1,2.5,3\n", "t.csv:2: input_length must be a whole"),
        ("t.csv", "timestamp,input_length,output_length\n1,2,-3\n", "t.csv:2: output_length must be a whole"),
        ("t.csv", "timestamp,input_length,output_length\nsoon,2,3\n", "t.csv:2: timestamp is not a number"),
        (
            "t.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,2,3\n",
            "t.csv:2: TIMESTAMP is not a date",
        ),
        ("t.csv", "timestamp,input_length,output_length\n", "no trace rows"),
        ("t.jsonl", '{"timestamp": 1, "input_length": 2}\n', "t.jsonl:1: missing output_length"),
        (
            "t.jsonl",
            '{"timestamp": 1, "input_length": 2, "output_length": 1}\n{oops\n',
            "t.jsonl:2: not valid JSON",
        ),
        ("t.jsonl", "[1, 2]\n", "t.jsonl:1: expected a JSON object"),
        (
            "t.jsonl",
            '{"timestamp": "x", "input_length": 2, "output_length": 1}\n',
            "timestamp is not a number",
        ),
    ],
)
def test_trace_errors(tok: Tokenizer, tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorkloadError, match=message) as info:
        trace_workload(path, tok, seed=0)
    assert "\n" not in str(info.value)


def test_trace_argument_checks(tok: Tokenizer, tmp_path: Path) -> None:
    path = write(tmp_path / "azure.csv", AZURE)
    with pytest.raises(WorkloadError, match="time_scale must be a positive number"):
        trace_workload(path, tok, seed=0, replay=TraceReplay(time_scale=0))
    with pytest.raises(WorkloadError, match="count must be >= 1"):
        TraceReplay(count=0)
    with pytest.raises(WorkloadError, match="not both"):
        TraceReplay(time_scale=2.0, rate=4.0)
    with pytest.raises(WorkloadError, match=r"by time \(start, duration\) or by rows"):
        TraceReplay(first_row=3, start_s=10.0)
    with pytest.raises(WorkloadError, match="unknown over-length policy 'cut'"):
        TraceReplay(overlength="cut")
    with pytest.raises(WorkloadError, match="first row 3 is past its 3 usable rows"):
        select_trace(path, TraceReplay(first_row=3))
    with pytest.raises(WorkloadError, match="no rows from 5 s"):
        select_trace(path, TraceReplay(start_s=5.0))


# ---- slices, speed and the over-length policy (expected values worked out by hand from the rows) ------

# Gaps 1, 3, 0.5, 1.5, 4 s; lengths chosen so that a 100-token context clips rows 2 and 4.
ROWS = """timestamp_s,input_length,output_length
100,10,5
101,20,5
104,95,10
104.5,30,5
106,120,90
110,40,5
"""


def test_a_target_rate_rescales_the_slice_to_that_mean(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ROWS)
    own = select_trace(path)
    assert own.info.trace_span_s == 10.0 and own.info.trace_rate == pytest.approx(0.5)  # 5 gaps in 10 s
    assert own.arrivals_s == (0.0, 1.0, 4.0, 4.5, 6.0, 10.0) and own.info.time_scale == 1.0
    fast = select_trace(path, TraceReplay(rate=2.0))  # 4x the slice's own 0.5 req/s: gaps / 4
    assert fast.info.time_scale == pytest.approx(0.25) and fast.info.offered_rate == pytest.approx(2.0)
    assert fast.arrivals_s == pytest.approx((0.0, 0.25, 1.0, 1.125, 1.5, 2.5))
    slow = select_trace(path, TraceReplay(time_scale=3.0))
    assert slow.arrivals_s[-1] == 30.0 and slow.info.offered_rate == pytest.approx(0.5 / 3)


def test_slices_by_time_or_by_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ROWS)
    by_time = select_trace(path, TraceReplay(start_s=1.0, duration_s=5.0))  # trace time [1, 6): rows 1-3
    assert [r.input_len for r in by_time.rows] == [20, 95, 30] and by_time.arrivals_s == (0.0, 3.0, 3.5)
    assert (by_time.info.first_row, by_time.info.start_s, by_time.info.trace_span_s) == (1, 1.0, 3.5)
    by_rows = select_trace(path, TraceReplay(first_row=4, count=5))
    assert [r.input_len for r in by_rows.rows] == [120, 40] and by_rows.arrivals_s == (0.0, 4.0)
    assert by_rows.info.start_s == 6.0 and by_rows.info.requests == 2


def test_rows_longer_than_the_context_are_clipped_or_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ROWS)
    clip = select_trace(path, TraceReplay(max_model_len=100))
    # 95 + 10 > 100: prompt cut to 90; 120 + 90 > 100: prompt cut to 10; the others fit.
    assert [(r.input_len, r.output_len) for r in clip.rows] == [
        (10, 5),
        (20, 5),
        (90, 10),
        (30, 5),
        (10, 90),
        (40, 5),
    ]
    assert (clip.info.clipped, clip.info.clipped_tokens, clip.info.skipped) == (2, 5 + 110, 0)
    skip = select_trace(path, TraceReplay(max_model_len=100, overlength="skip"))
    assert [r.input_len for r in skip.rows] == [10, 20, 30, 40] and skip.arrivals_s == (0.0, 1.0, 4.5, 10.0)
    assert (skip.info.clipped, skip.info.skipped) == (0, 2)
    # An output that alone fills the context leaves no room for a prompt: skipped under either policy.
    tight = select_trace(path, TraceReplay(max_model_len=90))
    assert tight.info.skipped == 1 and 90 not in [r.output_len for r in tight.rows]


def test_prefix_reuse_counts_whole_blocks_behind_the_same_prefix(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 0, "input_length": 12, "output_length": 1, "hash_ids": [1, 2, 3]},  # 3 blocks of 4
        {"timestamp": 1, "input_length": 10, "output_length": 1, "hash_ids": [1, 2, 7]},  # 1, 2 reused
        {"timestamp": 2, "input_length": 8, "output_length": 1, "hash_ids": [9, 2]},  # 2 behind 9: new
        {"timestamp": 3, "input_length": 6, "output_length": 1, "hash_ids": [1, 2]},  # 1 reused, 2 partial
    ]
    path = write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in rows))
    sel = select_trace(path, block_size=4)
    assert prefix_chains(sel.rows, 4) == [(0, 1, 2), (0, 1), (3, 4), (0,)]
    assert sel.info.prefix_reuse == pytest.approx((8 + 4) / (12 + 10 + 8 + 6))
    assert sel.info.block_size == 4
    clipped = select_trace(path, TraceReplay(max_model_len=9), block_size=4)  # 12 + 1 > 9: prompt 8
    assert clipped.rows[0].input_len == 8 and clipped.rows[0].hash_ids == (1, 2)
    assert select_trace(write(tmp_path / "a.csv", AZURE)).info.prefix_reuse is None


def test_trace_specs_take_a_window_of_the_selection(tok: Tokenizer, tmp_path: Path) -> None:
    sel = select_trace(write(tmp_path / "t.csv", ROWS))
    warm = trace_specs(sel, tok, seed=5, count=2)
    rest = trace_specs(sel, tok, seed=6, first=2)
    assert [s.input_tokens for s in warm] == [10, 20] and [s.arrival_s for s in warm] == [0.0, 1.0]
    assert [s.arrival_s for s in rest] == [0.0, 0.5, 2.0, 6.0] and [s.index for s in rest] == [0, 1, 2, 3]
    assert warm[0].prompt != trace_specs(sel, tok, seed=6, count=1)[0].prompt


def test_is_trace_file() -> None:
    assert is_trace_file("a/b.CSV") and is_trace_file("x.jsonl") and not is_trace_file("sharegpt.json")
    assert not is_trace_file(None)

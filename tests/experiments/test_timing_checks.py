"""Warnings when the client shaped a run's timing: coalesced chunks (a real run against the fake server
writing its events two at a time) and send lateness; both reach result.json and the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from analysis.render import render_markdown
from analysis.tables import compare_results
from experiments.model_dir import write_model_dir
from experiments.schema import Distribution, RunResult, Summary
from experiments.timing_checks import COALESCED_SHARE_MAX, SEND_LATENESS_P99_MAX_MS, client_timing_warnings
from fake_upstream import FakeBehavior, FakeUpstream

REPO = Path(__file__).resolve().parents[2]


def summary(chunks: int = 1000, coalesced: int = 0, late_p99: float | None = None) -> Summary:
    return Summary(
        chunks=chunks,
        coalesced_chunks=coalesced,
        send_lateness_ms=Distribution(p99=late_p99, count=0 if late_p99 is None else 100),
    )


def test_a_few_coalesced_chunks_pass_and_more_warn() -> None:
    at_limit = int(1000 * COALESCED_SHARE_MAX)
    assert client_timing_warnings(summary(coalesced=at_limit)) == []
    (w,) = client_timing_warnings(summary(coalesced=at_limit + 1))
    assert (w.code, w.observed, w.threshold) == (
        "coalesced_chunks",
        (at_limit + 1) / 1000,
        COALESCED_SHARE_MAX,
    )
    assert f"({at_limit + 1} of 1000)" in w.message and "read batching" in w.message
    assert client_timing_warnings(summary(chunks=0)) == []


def test_late_sends_warn_unless_a_concurrency_cap_held_them() -> None:
    assert client_timing_warnings(summary(late_p99=SEND_LATENESS_P99_MAX_MS)) == []
    (w,) = client_timing_warnings(summary(late_p99=SEND_LATENESS_P99_MAX_MS + 2))
    assert (w.code, w.observed, w.threshold) == ("send_lateness", 7.0, 5.0)
    assert "send lateness p99 7.0 ms" in w.message and "offered load" in w.message
    assert client_timing_warnings(summary(late_p99=50.0), capped=True) == []
    assert client_timing_warnings(summary(late_p99=None)) == []  # closed loop: no schedule


def test_a_run_whose_chunks_arrive_in_pairs_says_so(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "model")
    pairs = FakeBehavior(coalesce_pairs=True, chunk_interval_s=0.01)  # one write holds two events
    with FakeUpstream(pairs, root=str(model)) as srv:
        cmd = [
            sys.executable, str(REPO / "run_experiment.py"),
            "--endpoint", srv.url, "--input-len", "8", "--output-len", "8",
            "--num-requests", "6", "--rate", "20", "--warmup", "0",
            "--monitor", "none", "--idle-seconds", "0",
            "--output-dir", str(tmp_path / "runs"), "--run-name", "pairs",
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    res = RunResult.load(tmp_path / "runs" / "pairs")
    s = res.summary
    assert s is not None and s.completed == 6 and s.chunks == 48
    assert s.coalesced_chunks >= 24  # every second chunk, at least
    assert s.coalesced_chunk_share is not None and s.coalesced_chunk_share >= 0.5
    doc = orjson.loads((tmp_path / "runs" / "pairs" / "result.json").read_bytes())
    assert doc["summary"]["coalesced_chunk_share"] == s.coalesced_chunk_share  # for readers without us
    coalesced = [w for w in res.warnings if w.code == "coalesced_chunks"]
    assert len(coalesced) == 1 and "same network read" in coalesced[0].message
    assert coalesced[0].observed == s.coalesced_chunk_share and coalesced[0].threshold == 0.01
    assert "warning: " + coalesced[0].message in proc.stderr

    report = render_markdown(compare_results([tmp_path / "runs" / "pairs"]))
    assert coalesced[0].message in report

"""Ctrl-C and SIGTERM during a run: run_experiment.py as a real subprocess against a slow fake server,
signalled while requests are in flight. Those requests are recorded as cancelled, with what was timed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from experiments.model_dir import write_model_dir
from experiments.schema import RECORDS_FILE, RunResult
from experiments.schema.records import CANCELLED
from fake_upstream import FakeBehavior, FakeUpstream

REPO = Path(__file__).resolve().parents[2]
IN_FLIGHT = 3


def wait_for(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], timeout_s: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"run_experiment.py exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout_s:g} s")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_requests_in_flight_are_recorded_as_cancelled(tmp_path: Path, sig: signal.Signals) -> None:
    model = write_model_dir(tmp_path / "model")
    slow = FakeBehavior(chunk_interval_s=0.5)  # 40 tokens: 20 s a request, none ends before the signal
    with FakeUpstream(slow, root=str(model)) as srv:
        cmd = [
            sys.executable, str(REPO / "run_experiment.py"),
            "--endpoint", srv.url, "--input-len", "8", "--output-len", "40",
            "--num-requests", "50", "--rate", "20", "--warmup", "0",
            "--monitor", "none", "--idle-seconds", "0",
            "--output-dir", str(tmp_path / "runs"), "--run-name", "cut",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(f"{IN_FLIGHT} requests in flight", lambda: srv.in_flight >= IN_FLIGHT, proc)
        time.sleep(0.2)  # the first requests have their first chunks
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err

    res = RunResult.load(tmp_path / "runs" / "cut")
    assert res.status == "interrupted" and not res.complete
    assert res.error is not None and "interrupted" in res.error
    cut = res.measured()
    assert len(cut) >= IN_FLIGHT and all(r.cancelled and r.error == CANCELLED for r in cut)
    assert all(r.sent_mono_ns and r.end_mono_ns and r.end_mono_ns > r.sent_mono_ns for r in cut)
    # a request sent in the last moment before the signal may have had no answer yet (status None)
    assert all(r.status in (200, None) and not r.succeeded for r in cut)
    assert sum(r.status == 200 for r in cut) >= IN_FLIGHT
    assert any(r.chunk_mono_ns and r.first_byte_mono_ns for r in cut)  # timed so far, kept
    s = res.summary
    assert s is not None and (s.cancelled, s.failed, s.completed) == (len(cut), 0, 0)
    assert s.errors == {}

    # the same records in requests.jsonl and in result.json
    lines = [orjson.loads(x) for x in (tmp_path / "runs" / "cut" / RECORDS_FILE).read_bytes().splitlines()]
    doc = orjson.loads((tmp_path / "runs" / "cut" / "result.json").read_bytes())
    assert lines == doc["records"] and len(lines) == len(cut)
    assert doc["status"] == "interrupted" and doc["summary"]["cancelled"] == len(cut)
    assert "0 failed" in out and f"{len(cut)} cancelled" in out

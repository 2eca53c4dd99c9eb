"""The streaming client and run_experiment.py against a fake vLLM server over loopback HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from experiments.client import (
    NO_TEXT,
    ClientConfig,
    make_session,
    new_record,
    run_closed_loop,
    run_open_loop,
    send_request,
)
from experiments.model_dir import write_model_dir
from experiments.schema import Record, StageTimes, convert
from experiments.workloads import RequestSpec
from fake_upstream import HTTP_ERROR_MESSAGE, STREAM_ERROR_MESSAGE, TIMING_STAGES, FakeBehavior, FakeUpstream
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_S = 180


def specs_of(outputs: list[int], words: int = 3, extra: str = "") -> list[RequestSpec]:
    """Specs with prompts of `words` distinct words (+ `extra`), one per output length."""
    out = []
    for i, n in enumerate(outputs):
        prompt = " ".join(f"t{100 * i + k}" for k in range(words)) + (f" {extra}" if extra else "")
        out.append(RequestSpec(i, prompt, words, n))
    return out


def open_loop(
    cfg: ClientConfig, specs: list[RequestSpec], offsets: list[float] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the open loop; returns (records, records in on_record call order)."""
    seen: list[dict[str, Any]] = []

    async def go() -> list[dict[str, Any]]:
        async with make_session(cfg) as session:
            return await run_open_loop(session, specs, offsets or [0.0] * len(specs), cfg, seen.append)

    return asyncio.run(asyncio.wait_for(go(), 60)), seen


def one_request(cfg: ClientConfig, spec: RequestSpec) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with make_session(cfg) as session:
            return await send_request(session, spec, cfg, new_record(spec, False, None))

    return asyncio.run(asyncio.wait_for(go(), 60))


def max_overlap(records: list[dict[str, Any]]) -> int:
    """Most requests the client had in flight at once (from sent / end stamps)."""
    events = sorted([(r.sent_mono_ns, 1) for r in records] + [(r.end_mono_ns, -1) for r in records])
    level = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


@pytest.fixture
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeBehavior(first_token_delay_s=0.005, chunk_interval_s=0.001)) as srv:
        yield srv


# ---------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_every_field_filled_and_ordered(server: FakeUpstream, api: str) -> None:
    specs = specs_of([1, 4, 7, 16], words=5)
    offsets = [0.0, 0.01, 0.02, 0.03]
    cfg = ClientConfig(endpoint=server.url, model="fake-model", api=api)
    records, seen = open_loop(cfg, specs, offsets)

    assert [r.index for r in records] == [0, 1, 2, 3]
    assert sorted(r.index for r in seen) == [0, 1, 2, 3]
    for spec, r in zip(specs, records, strict=True):
        assert r.ok is True and r.error is None and r.status == 200
        assert r.warmup is False
        assert r.request_id.startswith("cmpl-fake-")
        assert r.input_tokens_expected == 5 and r.output_tokens_expected == spec.output_tokens
        assert r.prompt_tokens == 5
        assert r.completion_tokens == spec.output_tokens
        assert len(r.chunk_mono_ns) == spec.output_tokens
        assert r.chunk_mono_ns == sorted(r.chunk_mono_ns)
        assert (
            r.scheduled_mono_ns
            <= r.sent_mono_ns
            <= r.first_byte_mono_ns
            <= r.first_token_mono_ns
            <= r.chunk_mono_ns[-1]
            <= r.end_mono_ns
        )
        assert r.first_token_mono_ns == r.chunk_mono_ns[0]
        assert r.send_lateness_ms == (r.sent_mono_ns - r.scheduled_mono_ns) / 1e6 >= 0
        assert r.sent_epoch_ns <= r.end_epoch_ns
        # epoch and monotonic stamps describe the same instants (to well within a second)
        assert abs((r.end_epoch_ns - r.sent_epoch_ns) - (r.end_mono_ns - r.sent_mono_ns)) < 1e9
        assert r.stages is None
    # The schedule is exactly start + offset.
    sched = [r.scheduled_mono_ns for r in records]
    assert [s - sched[0] for s in sched] == [int(o * 1e9) - int(offsets[0] * 1e9) for o in offsets]
    # The server got what the specs asked for.
    bodies = sorted(server.bodies, key=lambda b: b["max_tokens"])
    assert [b["max_tokens"] for b in bodies] == [1, 4, 7, 16]
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in bodies)
    assert all(b["model"] == "fake-model" and b["ignore_eos"] is True for b in bodies)
    key = "messages" if api == "chat" else "prompt"
    assert all(key in b for b in bodies)


def test_proxy_timing_comment_parsed_into_stages(server: FakeUpstream) -> None:
    cfg = ClientConfig(endpoint=server.url, model="fake-model", extra_body={"fake_mode": "timing"})
    r = one_request(cfg, specs_of([3])[0])
    assert r.ok is True
    assert r.stages == convert(TIMING_STAGES, StageTimes, "timing")
    assert len(r.chunk_mono_ns) == 3


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_on_first_token_fires_once_at_the_first_text_chunk(api: str) -> None:
    """After one text chunk the stream goes silent for 1 s: the hook has seen exactly that chunk (a chat
    stream's opening role event, with no text, does not fire it). A stream without text never fires it."""
    behavior = FakeBehavior(fault="stall", fault_after=1, stall_s=1.0)
    with FakeUpstream(behavior) as srv:
        cfg = ClientConfig(endpoint=srv.url, model="fake-model", api=api)
        seen: list[tuple[int, int]] = []

        def hook(rec: Record) -> None:
            seen.append((rec.index, len(rec.chunk_mono_ns)))

        async def go(spec: RequestSpec) -> Record:
            async with make_session(cfg) as session:
                return await send_request(session, spec, cfg, on_first_token=hook)

        spec = specs_of([4])[0]
        r = asyncio.run(asyncio.wait_for(go(spec), 60))
        assert r.ok is True and len(r.chunk_mono_ns) == 4 and r.index == spec.index
        assert seen == [(spec.index, 1)]
        srv.script(FakeBehavior(chunks=0))
        r = asyncio.run(asyncio.wait_for(go(spec), 60))
        assert r.error == NO_TEXT and seen == [(spec.index, 1)]


# ---------------------------------------------------------------------------------------------------------
# Faults: each a failed record with a clear error, never an exception
# ---------------------------------------------------------------------------------------------------------

FAULTS = {
    "http400": f'HTTP 400: {{"error":{{"message":"{HTTP_ERROR_MESSAGE} 400"',
    "http500": "HTTP 500: ",
    "malformed": "malformed stream: ",
    "drop": "ClientPayloadError: Response payload is not completed",
    "no_done": "stream ended without data: [DONE]",
    "stream_error": f"stream error: {STREAM_ERROR_MESSAGE}",
    "empty": "stream carried no output text",
    "not_object": "malformed stream: ",
}


@pytest.mark.parametrize("mode", sorted(FAULTS))
def test_fault_becomes_failed_record(server: FakeUpstream, mode: str) -> None:
    cfg = ClientConfig(endpoint=server.url, model="fake-model", extra_body={"fake_mode": mode})
    r = one_request(cfg, specs_of([6])[0])
    assert r.ok is False
    assert r.error.startswith(FAULTS[mode]), r.error
    assert r.first_token_mono_ns is None
    assert r.sent_mono_ns <= r.end_mono_ns and r.end_epoch_ns is not None
    assert r.status == (int(mode[4:]) if mode.startswith("http") else 200)
    if mode in ("malformed", "drop", "stream_error", "not_object"):
        assert len(r.chunk_mono_ns) == server.behavior.fault_after  # what arrived before the fault


def test_events_cut_across_network_reads(server: FakeUpstream) -> None:
    cfg = ClientConfig(endpoint=server.url, model="fake-model", extra_body={"fake_mode": "split"})
    r = one_request(cfg, specs_of([5], words=4)[0])
    assert r.ok is True, r.error
    assert (len(r.chunk_mono_ns), r.prompt_tokens, r.completion_tokens) == (5, 4, 5)


def test_mixed_faults_in_one_run_each_recorded_once(server: FakeUpstream) -> None:
    modes = ["ok", *sorted(FAULTS), "timing", "split", "ok"]
    specs = [RequestSpec(i, f"t1 t2 fake_mode={mode}", 3, 5) for i, mode in enumerate(modes)]
    cfg = ClientConfig(endpoint=server.url, model="fake-model")
    records, seen = open_loop(cfg, specs, [0.001 * i for i in range(len(specs))])
    assert Counter(r.index for r in seen) == Counter(range(len(specs)))  # on_record once each
    assert len(records) == len(specs)
    for mode, r in zip(modes, records, strict=True):
        if mode in FAULTS:
            assert r.ok is False and r.error.startswith(FAULTS[mode]), (mode, r.error)
        else:
            assert r.ok is True and len(r.chunk_mono_ns) == 5, (mode, r.error)


def test_timeout_is_a_failed_record() -> None:
    with FakeUpstream(FakeBehavior(first_token_delay_s=30.0)) as srv:
        cfg = ClientConfig(endpoint=srv.url, model="fake-model", request_timeout_s=0.3)
        r = one_request(cfg, specs_of([4])[0])
    assert r.ok is False
    assert r.error == "timed out after 0.3 s"
    assert r.status == 200  # headers came, tokens did not
    assert r.chunk_mono_ns == [] and r.end_mono_ns >= r.sent_mono_ns


def test_unreachable_endpoint_is_a_failed_record() -> None:
    cfg = ClientConfig(endpoint=f"http://127.0.0.1:{free_port()}", model="m", connect_timeout_s=5)
    records, seen = open_loop(cfg, specs_of([2, 2]))
    assert len(seen) == 2
    for r in records:
        assert r.ok is False and r.status is None
        assert r.error.startswith("ClientConnectorError: Cannot connect to host 127.0.0.1"), r.error
        assert r.end_mono_ns >= r.sent_mono_ns


# ---------------------------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------------------------


def test_closed_loop_sends_each_spec_once_with_at_most_users_in_flight() -> None:
    users, n = 4, 30
    specs = specs_of([3] * n)
    with FakeUpstream(FakeBehavior(first_token_delay_s=0.02, chunk_interval_s=0.001)) as srv:
        cfg = ClientConfig(endpoint=srv.url, model="fake-model")
        seen: list[dict[str, Any]] = []

        async def go() -> list[dict[str, Any]]:
            async with make_session(cfg) as session:
                return await run_closed_loop(session, specs, users, cfg, seen.append)

        records = asyncio.run(asyncio.wait_for(go(), 60))
    assert [r.index for r in records] == list(range(n))
    assert Counter(r.index for r in seen) == Counter(range(n))
    assert all(r.ok and r.scheduled_mono_ns is None and r.send_lateness_ms is None for r in records)
    assert sorted(b["prompt"] for b in srv.bodies) == sorted(s.prompt for s in specs)
    assert srv.requests == n
    assert srv.max_in_flight == users
    assert max_overlap(records) == users


@pytest.mark.parametrize("cap", [2, None])
def test_max_concurrency_caps_in_flight_and_shows_as_lateness(cap: int | None) -> None:
    n, server_delay_s = 8, 0.05
    with FakeUpstream(FakeBehavior(first_token_delay_s=server_delay_s)) as srv:
        cfg = ClientConfig(endpoint=srv.url, model="fake-model", max_concurrency=cap)
        records, _ = open_loop(cfg, specs_of([2] * n))  # all scheduled at once
    assert all(r.ok for r in records)
    assert srv.max_in_flight == (cap or n)
    assert max_overlap(records) == (cap or n)
    if cap:
        # Request k (in send order) waited for k // cap rounds of requests that each took >= the delay.
        by_send = sorted(records, key=lambda r: r.sent_mono_ns)
        for k, r in enumerate(by_send):
            assert r.send_lateness_ms >= (k // cap) * server_delay_s * 0.9e3, (k, r.send_lateness_ms)


# ---------------------------------------------------------------------------------------------------------
# run_experiment.py end to end
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model") / "m")


def run_cli(args: list[str], timeout: float = SUBPROCESS_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "run_experiment.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def base_args(url: str, out: Path, name: str) -> list[str]:
    return [
        "--endpoint", url,
        "--input-len", "8",
        "--output-len", "5",
        "--idle-seconds", "0",
        "--monitor", "none",
        "--output-dir", str(out),
        "--run-name", name,
    ]  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_run_experiment_end_to_end(model_dir: Path, tmp_path: Path) -> None:
    with FakeUpstream(FakeBehavior(chunk_interval_s=0.001), root=str(model_dir)) as srv:
        args = base_args(srv.url, tmp_path, "e2e")
        proc = run_cli(
            [*args, "--num-requests", "20", "--rate", "200", "--warmup", "2", "--slo", "ttft=60000"]
        )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = tmp_path / "e2e"
    assert f"result: {run_dir / 'result.json'} (complete)" in proc.stdout
    doc = orjson.loads((run_dir / "result.json").read_bytes())
    assert doc["schema_version"] and doc["complete"] is True and doc["status"] == "complete"
    assert doc["error"] is None
    assert doc["metadata"]["mode"] == "traditional" and doc["metadata"]["model"] == "fake-model"
    assert doc["metadata"]["tokenizer"] == str(model_dir)
    records = doc["records"]
    assert records == read_jsonl(run_dir / "requests.jsonl")
    assert len(records) == 22
    assert sorted(r["index"] for r in records if not r["warmup"]) == list(range(20))
    assert sum(r["warmup"] for r in records) == 2
    assert all(r["ok"] and r["prompt_tokens"] == 8 and len(r["chunk_mono_ns"]) == 5 for r in records)
    s = doc["summary"]
    assert (s["measured"], s["warmup_excluded"], s["completed"], s["failed"]) == (20, 2, 20, 0)
    assert (s["total_input_tokens"], s["total_output_tokens"]) == (160, 100)
    assert s["good_requests"] == 20 and s["errors"] == {}
    assert s["ttft_ms"]["count"] == 20 and s["itl_ms"]["count"] == 20 * 4
    assert doc["energy"]["available"] is False and doc["energy"]["reason"]
    assert srv.requests == 22


def assert_one_line_error(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], proc.stderr  # argparse puts its usage first
    assert expected in errors[0], errors[0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--mode", "bogus"], "argument --mode: invalid choice: 'bogus'"),
        (["--slo", "ttft=fast"], "argument --slo: SLO 'ttft=fast': 'fast' is not a number"),
        (["--slo", "latency=3"], "unknown SLO 'latency'"),
        (["--rate", "0"], "argument --rate/--request-rate: rate must be > 0"),
        (["--rate", "-2"], "argument --rate/--request-rate: rate must be > 0"),
    ],
)
def test_bad_arguments_give_one_error_line(extra: list[str], expected: str, tmp_path: Path) -> None:
    proc = run_cli([*base_args("http://127.0.0.1:9", tmp_path, "x"), "--rate", "1", *extra])
    assert_one_line_error(proc, expected)
    assert not (tmp_path / "x").exists()


def test_unreachable_endpoint_gives_one_error_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_cli([*base_args(url, tmp_path, "x"), "--rate", "1"])
    assert_one_line_error(proc, f"error: endpoint {url} is unreachable")


def test_missing_sharegpt_dataset_gives_one_error_line(model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with FakeUpstream(root=str(model_dir)) as srv:
        args = base_args(srv.url, tmp_path, "x")
        proc = run_cli([*args, "--rate", "1", "--workload", "sharegpt", "--dataset", str(missing)])
    assert_one_line_error(proc, f"error: dataset file not found: {missing}")
    assert srv.requests == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_keeps_what_was_measured(model_dir: Path, tmp_path: Path, sig: int) -> None:
    with FakeUpstream(FakeBehavior(chunk_interval_s=0.05), root=str(model_dir)) as srv:
        args = base_args(srv.url, tmp_path, "int")
        extra = ["--num-requests", "200", "--arrival", "closed", "--concurrency", "2", "--warmup", "0"]
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "run_experiment.py"), *args, *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        jsonl = tmp_path / "int" / "requests.jsonl"
        try:
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
            while not (jsonl.exists() and len(read_jsonl(jsonl)) >= 3):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no records within the timeout"
                time.sleep(0.05)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    doc = orjson.loads((tmp_path / "int" / "result.json").read_bytes())
    assert doc["complete"] is False and doc["status"] == "interrupted"
    assert "interrupted" in doc["error"]
    on_disk = read_jsonl(jsonl)
    assert len(on_disk) >= 3
    assert doc["records"] == on_disk
    assert doc["summary"]["measured"] == len(on_disk) < 200
    assert "(interrupted)" in out

"""The result schema: writer -> loader round trip, crash recovery from requests.jsonl, bad inputs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from experiments.results import RECORDS_FILE, RESULT_FILE, SCHEMA_VERSION, ResultWriter, load

REPO = Path(__file__).resolve().parents[2]
MS = 1_000_000
T0 = 5_000_000_000_000  # an arbitrary monotonic origin (ns)


def rec(
    index: int,
    sent_ms: float,
    chunks_ms: list[float],
    end_ms: float,
    ok: bool = True,
    warmup: bool = False,
) -> dict[str, Any]:
    """A client record with hand-picked times (ms after T0)."""
    return {
        "index": index,
        "request_id": f"cmpl-{index}",
        "warmup": warmup,
        "input_tokens_expected": 8,
        "output_tokens_expected": len(chunks_ms),
        "scheduled_mono_ns": T0 + int(sent_ms * MS) - 1000,
        "sent_mono_ns": T0 + int(sent_ms * MS),
        "sent_epoch_ns": 1_700_000_000_000_000_000 + int(sent_ms * MS),
        "first_byte_mono_ns": T0 + int(chunks_ms[0] * MS) if chunks_ms else None,
        "first_token_mono_ns": T0 + int(chunks_ms[0] * MS) if ok and chunks_ms else None,
        "end_mono_ns": T0 + int(end_ms * MS),
        "end_epoch_ns": 1_700_000_000_000_000_000 + int(end_ms * MS),
        "send_lateness_ns": 1000,
        "chunk_mono_ns": [T0 + int(c * MS) for c in chunks_ms],
        "prompt_tokens": 8 if ok else None,
        "completion_tokens": len(chunks_ms) if ok else None,
        "status": 200 if ok else 500,
        "ok": ok,
        "error": None if ok else "HTTP 500: boom",
        "stages": {"prefill_ms": 1.5} if ok else None,
    }


# E2EL ends at the last text chunk, as in vLLM (not at the end of the stream).
# A: TTFT 10, chunks 10/20/40 -> ITL 10, 20; E2EL 40; TPOT (40 - 10) / 2 = 15.
# B: sent 100 ms later; TTFT 5, chunks 105/110 -> ITL 5; E2EL 10; TPOT (10 - 5) / 1 = 5.
# C: failed; W: warm-up. Neither counts in arrays().
RECORDS = [
    rec(-1, -50, [-40, -30], -25, warmup=True),
    rec(0, 0, [10, 20, 40], 45),
    rec(1, 100, [105, 110], 112),
    rec(2, 150, [], 160, ok=False),
]
METADATA = {"mode": "traditional", "model": "m", "config": {"rate": 4.0, "slo": None}}


def write_complete(run_dir: Path) -> Path:
    writer = ResultWriter(run_dir, METADATA)
    for r in RECORDS:
        writer.append(r)
    writer.add_section("energy", {"available": False, "reason": "no GPU"})
    return writer.finalize({"completed": 2, "failed": 1, "ttft_ms": {"p50": 7.5}})


def test_round_trip(tmp_path: Path) -> None:
    path = write_complete(tmp_path / "run")
    assert path == tmp_path / "run" / RESULT_FILE
    for where in (path, path.parent):  # result.json or its directory
        res = load(where)
        assert res.complete is True
        assert res.doc["schema_version"] == SCHEMA_VERSION and res.doc["status"] == "complete"
        assert res.metadata["schema_version"] == SCHEMA_VERSION
        assert {k: res.metadata[k] for k in METADATA} == METADATA
        assert res.metadata["end_epoch_ns"] > 0
        assert res.summary == {"completed": 2, "failed": 1, "ttft_ms": {"p50": 7.5}}
        assert res.records == RECORDS
        assert res.energy == {"available": False, "reason": "no GPU"}
        assert [r["index"] for r in res.measured()] == [0, 1, 2]
    lines = (tmp_path / "run" / RECORDS_FILE).read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == RECORDS


def test_result_is_valid_and_incomplete_while_running(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run", METADATA)
    writer.append(RECORDS[1])
    res = load(tmp_path / "run")
    assert res.complete is False and res.doc["status"] == "running" and res.summary is None
    assert res.records == [RECORDS[1]]  # taken from requests.jsonl
    writer.close()


def test_interrupted_finalize_is_incomplete(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run", METADATA)
    writer.append(RECORDS[1])
    writer.finalize({"completed": 1}, status="interrupted", error="interrupted by the user")
    res = load(tmp_path / "run")
    assert res.complete is False
    assert res.doc["status"] == "interrupted" and res.doc["error"] == "interrupted by the user"
    assert res.records == [RECORDS[1]]


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import orjson
    from experiments.results import ResultWriter
    run_dir, k, half = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    records = orjson.loads(sys.argv[4])
    writer = ResultWriter(run_dir, {"mode": "traditional"})
    for r in records[:k]:
        writer.append(r)
    if half:  # a line cut short, as a crash inside write() could leave it
        with open(os.path.join(run_dir, "requests.jsonl"), "ab") as fh:
            fh.write(orjson.dumps(records[k])[:37])
    os._exit(1)
    """
)


@pytest.mark.parametrize("half_line", [False, True])
def test_recovery_after_crash(tmp_path: Path, half_line: bool) -> None:
    k = 3
    run_dir = tmp_path / "crashed"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASH_SCRIPT,
            str(run_dir),
            str(k),
            "1" if half_line else "0",
            orjson.dumps(RECORDS),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert (run_dir / RECORDS_FILE).read_bytes().endswith(b"\n") is not half_line
    res = load(run_dir)
    assert res.complete is False and res.doc["status"] == "running"
    assert res.records == RECORDS[:k]
    assert res.summary is None


def test_arrays(tmp_path: Path) -> None:
    res = load(write_complete(tmp_path / "run"))
    arr = res.arrays()
    np.testing.assert_allclose(arr["ttft_ms"], [10.0, 5.0])
    np.testing.assert_allclose(arr["e2el_ms"], [40.0, 10.0])
    np.testing.assert_allclose(arr["tpot_ms"], [15.0, 5.0])
    np.testing.assert_allclose(arr["itl_req_avg_ms"], [15.0, 5.0])
    np.testing.assert_allclose(arr["itl_ms"], [10.0, 20.0, 5.0])
    np.testing.assert_allclose(arr["sent_s"], [0.0, 0.1])
    assert all(a.dtype == float for a in arr.values())


def test_arrays_of_a_run_without_successes(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run", METADATA)
    writer.append(RECORDS[3])
    res = load(writer.finalize(None))
    arr = res.arrays()
    assert set(arr) == {"ttft_ms", "tpot_ms", "e2el_ms", "itl_req_avg_ms", "itl_ms", "sent_s"}
    assert all(a.size == 0 for a in arr.values())


def test_non_result_json_is_a_clear_value_error(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps({"hello": "world"}))
    with pytest.raises(ValueError, match="is not a testbed result"):
        load(other)
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"schema_version": "1.0", ')
    with pytest.raises(ValueError, match="is not valid JSON"):
        load(broken)


def test_missing_path_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no result at"):
        load(tmp_path / "nowhere" / "result.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no result at"):
        load(tmp_path / "empty")

"""RunResult on disk: save -> load round trip, the crash-safe writer, recovery from requests.jsonl,
per-request energy over the summary's count, bad inputs."""

from __future__ import annotations

import lzma
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import orjson
import pytest

from experiments.arrivals import ArrivalConfig
from experiments.metrics import compute_summary
from experiments.schema import (
    RECORDS_FILE,
    RESULT_FILE,
    SCHEMA_VERSION,
    EnergySection,
    GpuEnergy,
    Provenance,
    Record,
    ResultWriter,
    RunConfig,
    RunMetadata,
    RunResult,
    SchemaError,
    StageTimes,
    WorkloadConfig,
    record_line,
)

REPO = Path(__file__).resolve().parents[3]
MS = 1_000_000
T0 = 5_000_000_000_000  # an arbitrary monotonic origin (ns)


def rec(
    index: int, sent_ms: float, chunks_ms: list[float], end_ms: float, ok: bool = True, warmup: bool = False
) -> Record:
    """A client record with hand-picked times (ms after T0)."""
    return Record(
        index=index,
        request_id=f"cmpl-{index}",
        warmup=warmup,
        input_tokens_expected=8,
        output_tokens_expected=len(chunks_ms),
        scheduled_mono_ns=T0 + int(sent_ms * MS) - 1000,
        sent_mono_ns=T0 + int(sent_ms * MS),
        sent_epoch_ns=1_700_000_000_000_000_000 + int(sent_ms * MS),
        first_byte_mono_ns=T0 + int(chunks_ms[0] * MS) if chunks_ms else None,
        first_token_mono_ns=T0 + int(chunks_ms[0] * MS) if ok and chunks_ms else None,
        end_mono_ns=T0 + int(end_ms * MS),
        end_epoch_ns=1_700_000_000_000_000_000 + int(end_ms * MS),
        chunk_mono_ns=[T0 + int(c * MS) for c in chunks_ms],
        prompt_tokens=8 if ok else None,
        completion_tokens=len(chunks_ms) if ok else None,
        status=200 if ok else 500,
        ok=ok,
        error=None if ok else "HTTP 500: boom",
        stages=StageTimes(prefill_ms=1.5) if ok else None,
    )


# E2EL ends at the last text chunk, as in vLLM (not at the end of the stream).
# A: TTFT 10, chunks 10/20/40 -> ITL 10, 20; E2EL 40; TPOT (40 - 10) / 2 = 15.
# B: sent 100 ms later; TTFT 5, chunks 105/110 -> ITL 5; E2EL 10; TPOT (10 - 5) / 1 = 5.
# C: failed; W: warm-up. Neither counts in arrays().
def records() -> list[Record]:
    return [
        rec(-1, -50, [-40, -30], -25, warmup=True),
        rec(0, 0, [10, 20, 40], 45),
        rec(1, 100, [105, 110], 112),
        rec(2, 150, [], 160, ok=False),
    ]


def metadata() -> RunMetadata:
    config = RunConfig(
        mode="traditional",
        endpoint="http://127.0.0.1:8000",
        workload=WorkloadConfig(num_requests=3, input_len=(4, 12), output_len=3),
        arrival=ArrivalConfig(kind="poisson", rate=float("inf"), warmup=1),
        gpu_roles={0: "serving", 1: "idle"},
        output_dir=Path("results/runs"),
    )
    prov = Provenance(command_line=["python", "run_experiment.py"], hostname="h", start_epoch_ns=1)
    return RunMetadata.of(prov, mode="traditional", endpoint=config.endpoint, config=config, model="m")


def write_complete(run_dir: Path) -> Path:
    writer = ResultWriter(run_dir, metadata())
    for r in records():
        writer.append(r)
    writer.result.summary = compute_summary(writer.records)
    writer.result.energy = EnergySection.unavailable("no GPU")
    return writer.finish()


def test_round_trip(tmp_path: Path) -> None:
    path = write_complete(tmp_path / "run")
    assert path == tmp_path / "run" / RESULT_FILE
    for where in (path, path.parent):  # result.json or its directory
        res = RunResult.load(where)
        assert res.complete is True and res.status == "complete" and res.path == path
        assert res.metadata.end_epoch_ns is not None and res.metadata.end_epoch_ns > 0
        assert res.metadata.config == metadata().config  # tuples, infinite rates and int keys survive
        assert res.summary == compute_summary(records())
        assert res.records == records()
        assert res.energy == EnergySection.unavailable("no GPU")
        assert [r.index for r in res.measured()] == [0, 1, 2]
    doc = orjson.loads(path.read_bytes())
    assert doc["schema_version"] == SCHEMA_VERSION and "schema_version" not in doc["metadata"]
    assert doc["metadata"]["config"]["arrival"]["rate"] == "inf"
    lines = (tmp_path / "run" / RECORDS_FILE).read_bytes().splitlines(keepends=True)
    assert lines == [record_line(r) for r in records()]


def test_save_and_load_are_symmetric(tmp_path: Path) -> None:
    res = RunResult.load(write_complete(tmp_path / "a"))
    again = RunResult.load(res.save(tmp_path / "b"))
    assert again.to_dict() == res.to_dict()
    assert (tmp_path / "b" / RECORDS_FILE).read_bytes() == (tmp_path / "a" / RECORDS_FILE).read_bytes()


def test_result_is_valid_and_incomplete_while_running(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run", metadata())
    writer.append(records()[1])
    res = RunResult.load(tmp_path / "run")
    assert res.complete is False and res.status == "running" and res.summary is None
    assert res.records == [records()[1]]  # taken from requests.jsonl
    writer.close()


def test_interrupted_finish_is_incomplete(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run", metadata())
    writer.append(records()[1])
    writer.finish("interrupted", "interrupted by the user")
    res = RunResult.load(tmp_path / "run")
    assert res.complete is False
    assert (res.status, res.error) == ("interrupted", "interrupted by the user")
    assert res.records == [records()[1]]


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import orjson
    from experiments.schema import ResultWriter, convert, Record
    from tests.experiments.schema.test_result import metadata
    run_dir, k, half = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    records = [convert(r, Record, "arg") for r in orjson.loads(sys.argv[4])]
    writer = ResultWriter(run_dir, metadata())
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
            orjson.dumps(records()),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert (run_dir / RECORDS_FILE).read_bytes().endswith(b"\n") is not half_line
    res = RunResult.load(run_dir)
    assert res.complete is False and res.status == "running"
    assert res.records == records()[:k]
    assert res.summary is None


def test_arrays(tmp_path: Path) -> None:
    arr = RunResult.load(write_complete(tmp_path / "run")).arrays()
    np.testing.assert_allclose(arr["ttft_ms"], [10.0, 5.0])
    np.testing.assert_allclose(arr["e2el_ms"], [40.0, 10.0])
    np.testing.assert_allclose(arr["tpot_ms"], [15.0, 5.0])
    np.testing.assert_allclose(arr["itl_req_avg_ms"], [15.0, 5.0])
    np.testing.assert_allclose(arr["itl_ms"], [10.0, 20.0, 5.0])
    np.testing.assert_allclose(arr["sent_s"], [0.0, 0.1])
    assert all(a.dtype == float for a in arr.values())


def test_arrays_of_a_run_without_successes(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run", metadata())
    writer.append(records()[3])
    arr = RunResult.load(writer.finish()).arrays()
    assert set(arr) == {"ttft_ms", "tpot_ms", "e2el_ms", "itl_req_avg_ms", "itl_ms", "sent_s"}
    assert all(a.size == 0 for a in arr.values())


def test_energy_per_request_divides_by_the_summarys_completed_requests() -> None:
    """The drift the 1.0 files had: energy counted `ok` records, the summary those with a token."""
    no_token = rec(3, 200, [], 210)  # the stream said [DONE] but carried no text: ok, not a success
    no_token.ok, no_token.error = True, None
    result = RunResult(metadata=metadata(), status="complete", records=[*records(), no_token])
    result.summary = compute_summary(result.records)
    gpu = GpuEnergy(index=0, energy_j=100.0, duration_s=2.0, idle_power_w=10.0)
    result.energy = EnergySection(available=True, gpus=[gpu])
    totals = result.to_dict()["energy"]["totals"]["all_gpus"]
    assert result.summary.completed == 2
    assert totals["j_per_request"] == 100.0 / 2
    assert totals["j_per_output_token"] == 100.0 / result.summary.total_output_tokens
    assert (totals["static_j"], totals["dynamic_j"]) == (20.0, 80.0)


def test_non_result_json_is_a_clear_value_error(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps({"hello": "world"}))
    with pytest.raises(ValueError, match="is not a testbed result"):
        RunResult.load(other)
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"schema_version": "2.0", ')
    with pytest.raises(ValueError, match="is not valid JSON"):
        RunResult.load(broken)


def test_a_bad_field_is_named_with_its_path(tmp_path: Path) -> None:
    doc = orjson.loads(write_complete(tmp_path / "run").read_bytes())
    doc["records"][1]["sent_mono_ns"] = "soon"
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(doc))
    with pytest.raises(
        SchemaError, match=r"bad.json does not fit the result schema: .* `\$.records\[1\].sent_mono_ns`"
    ):
        RunResult.load(bad)


def test_a_newer_schema_says_to_update(tmp_path: Path) -> None:
    doc = orjson.loads(write_complete(tmp_path / "run").read_bytes())
    newer = tmp_path / "newer.json"
    newer.write_bytes(orjson.dumps({**doc, "schema_version": "9.0"}))
    with pytest.raises(SchemaError, match=r"schema_version 9\.0; this testbed reads 1\.0, 2\.0"):
        RunResult.load(newer)


def test_missing_path_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no result at"):
        RunResult.load(tmp_path / "nowhere" / "result.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no result at"):
        RunResult.load(tmp_path / "empty")


def test_chunk_counts_missing_from_the_file_are_counted_on_load(tmp_path: Path) -> None:
    # A file that stores chunks = coalesced_chunks = 0 (written before the counts existed). Measured and
    # successful: A (3 chunks) and B (2); the warm-up and the failed request do not count. A fourth,
    # successful request D whose second chunk came in the same read as its first: 2 chunks, 1 coalesced.
    coalesced = rec(3, 200, [210, 210], 215)
    writer = ResultWriter(tmp_path / "run", metadata())
    for r in [*records(), coalesced]:
        writer.append(r)
    writer.result.summary = compute_summary(writer.records)
    writer.result.summary.chunks = writer.result.summary.coalesced_chunks = 0
    path = writer.finish()
    assert orjson.loads(path.read_bytes())["summary"]["chunks"] == 0
    s = RunResult.load(path).summary
    assert s is not None and (s.chunks, s.coalesced_chunks) == (3 + 2 + 2, 1)


def test_an_archived_run_without_chunk_counts_reads_back_counted() -> None:
    # Committed 2.1 archive that stores chunks = 0: 200 measured requests of 256 output tokens, one chunk
    # per token, all successful.
    path = REPO / "results/h200x2/frontier/prefill-heavy/pd/20261129-203423-disagg-rate4/result.json.xz"
    assert orjson.loads(lzma.decompress(path.read_bytes()))["summary"]["chunks"] == 0
    s = RunResult.load(path).summary
    assert s is not None and s.completed == 200 and s.chunks == 200 * 256


def test_a_result_written_before_proxy_retried_counts_it_on_load(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run", metadata())
    rows = records()
    rows[1].stages = StageTimes(retries=1)  # A (measured): the proxy retried a leg
    rows[0].stages = StageTimes(retries=1)  # the warm-up: not counted
    for r in rows:
        writer.append(r)
    writer.result.summary = compute_summary(writer.records)
    path = writer.finish()
    assert RunResult.load(path).summary.proxy_retried == 1  # type: ignore[union-attr]
    doc = orjson.loads(path.read_bytes())
    del doc["summary"]["proxy_retried"]  # as a file written before the field
    path.write_bytes(orjson.dumps(doc))
    assert RunResult.load(path).summary.proxy_retried == 1  # type: ignore[union-attr]

"""Archived runs (result.json.xz) load, and are found, exactly like the runs they were."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from analysis.runs import find_results
from experiments.archive import main as archive_main
from experiments.schema import ARCHIVE_FILE, RECORDS_FILE, RESULT_FILE, RunResult

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def test_an_archived_run_loads_as_the_original(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "traditional", run)
    before = RunResult.load(run).to_dict()
    assert archive_main([str(run)]) == 0
    assert (run / ARCHIVE_FILE).exists() and not (run / RESULT_FILE).exists()
    assert not (run / RECORDS_FILE).exists()
    after = RunResult.load(run)
    assert after.to_dict() == before and after.complete
    assert find_results(tmp_path) == [run / ARCHIVE_FILE]


def test_an_incomplete_run_is_not_archived(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "incomplete_disagg", run)
    assert archive_main([str(run)]) == 2
    assert "not complete" in capsys.readouterr().err
    assert (run / RESULT_FILE).exists() and not (run / ARCHIVE_FILE).exists()


def test_packed_chunk_times_come_back_within_half_a_microsecond() -> None:
    from experiments.schema.chunk_codec import pack_chunk_times, unpack_chunk_times

    chunks = [1_000_000_123, 1_005_000_999, 1_005_001_499, 1_012_345_678]
    doc = {"records": [{"index": 0, "chunk_mono_ns": chunks}, {"index": 1, "chunk_mono_ns": []}]}
    packed = pack_chunk_times(doc)
    assert "chunk_mono_ns" not in packed["records"][0] and packed["archive_codec"]
    back = unpack_chunk_times(orjson.loads(orjson.dumps(packed)))["records"]
    assert back[0]["chunk_mono_ns"][0] == chunks[0]  # the first chunk (TTFT) exactly
    assert all(abs(x - y) <= 500 for x, y in zip(back[0]["chunk_mono_ns"], chunks, strict=True))
    assert back[1]["chunk_mono_ns"] == []


def test_archiving_an_archive_rewrites_it_and_keeps_the_numbers(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "disagg", run)
    before = RunResult.load(run)
    assert archive_main([str(run)]) == 0 and archive_main([str(run)]) == 0
    after = RunResult.load(run)
    assert after.summary == before.summary and after.energy == before.energy
    assert [r.ttft_ms for r in after.records] == [r.ttft_ms for r in before.records]


def test_a_gap_moved_by_exactly_one_microsecond_still_archives(tmp_path: Path) -> None:
    """Offsets x.5 us round half to even: 2.5 -> 2 and 24739.5 -> 24740 widen a 24737 us gap by exactly
    1 us, which a float comparison saw as more than 1 us (a decode-heavy H200 run would not archive)."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "traditional", run)
    doc = orjson.loads((run / RESULT_FILE).read_bytes())
    rec = next(r for r in doc["records"] if len(r.get("chunk_mono_ns") or []) >= 3)
    base = rec["chunk_mono_ns"][0]
    rec["chunk_mono_ns"][1:3] = [base + 2_500, base + 24_739_500]
    (run / RESULT_FILE).write_bytes(orjson.dumps(doc))
    (run / RECORDS_FILE).unlink(missing_ok=True)
    before = RunResult.load(run)
    assert archive_main([str(run)]) == 0
    after = RunResult.load(run)
    gaps = [
        (a, b)
        for x, y in zip(after.records, before.records, strict=True)
        for a, b in zip(x.itl_ms, y.itl_ms, strict=True)
    ]
    assert max(abs(a - b) for a, b in gaps) == pytest.approx(1e-3)


def test_an_archived_power_csv_reads_back_and_attributes_as_the_original(tmp_path: Path) -> None:
    """A committed 2 x H200 run (its power.csv kept as power.csv.xz) restored as a fresh run: archiving
    compresses its CSV, every reader finds it by the CSV's name, and the attribution is the same."""
    import lzma

    from experiments.attribution import attribute
    from monitor.csv_io import read_power_csv

    src = next((ROOT / "results/h200x2/frontier/prefill-only/single").glob("*/power.csv.xz")).parent
    run = tmp_path / "run"
    shutil.copytree(src, run)
    csv_text = lzma.decompress((run / "power.csv.xz").read_bytes())
    (run / "power.csv.xz").unlink()
    (run / "power.csv").write_bytes(csv_text)
    fresh_csv, fresh = read_power_csv(run / "power.csv"), attribute(RunResult.load(run))
    assert archive_main([str(run)]) == 0
    assert not (run / "power.csv").exists() and (run / "power.csv.xz").stat().st_size < len(csv_text) / 4
    back = read_power_csv(run / "power.csv")  # found by the CSV's name
    assert back.path.name == "power.csv.xz" and back.gpu_ids == fresh_csv.gpu_ids
    assert back.columns.keys() == fresh_csv.columns.keys()
    assert all(np.array_equal(back.columns[k], v, equal_nan=True) for k, v in fresh_csv.columns.items())
    assert attribute(RunResult.load(run)) == fresh

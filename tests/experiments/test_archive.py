"""Archived runs (result.json.xz) load, and are found, exactly like the runs they were."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analysis.runs import find_results
from experiments.archive import main as archive_main
from experiments.schema import ARCHIVE_FILE, RECORDS_FILE, RESULT_FILE, RunResult

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


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

"""The source digest names the code that ran, with or without .git."""

from __future__ import annotations

from pathlib import Path

from experiments.provenance import source_digest


def test_digest_follows_the_sources_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    src = tmp_path / "experiments" / "a.py"
    src.write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = source_digest(tmp_path)
    assert source_digest(tmp_path) == first
    (tmp_path / "notes.txt").write_text("still not code")
    assert source_digest(tmp_path) == first
    src.write_text("x = 2\n")
    assert source_digest(tmp_path) != first
    src.write_text("x = 1\n")
    src.rename(tmp_path / "experiments" / "b.py")  # same bytes under another name: other code
    assert source_digest(tmp_path) != first

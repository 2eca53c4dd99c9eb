"""`planner break-even-diff`: the committed map against a copy with four cells moved by hand."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from planner.break_even_diff import diff_maps

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "results" / "planner" / "break-even" / "break_even.json"
MODEL = "llama-3.1-8b"


def _moved() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The map, a copy with four 8B cells' per-GPU margins moved, and what moved (read off the raw cells):
    a clear P/D win -> -20%, a clear loss -> +10%, a cell neither sustained -> +50%, a P/D win inside
    +-15% -> -10% (marginal); and one 8B cell left out of the copy."""
    before = json.loads(MAP.read_text())
    after = copy.deepcopy(before)
    cells = [c for c in after["cells"] if c["model"] == MODEL]
    m = [c["margin_gpu"] for c in cells]
    pick = {
        "win": next(i for i, x in enumerate(m) if x is not None and 0.15 < x < float("inf")),
        "loss": next(i for i, x in enumerate(m) if x is not None and x < -0.15),
        "neither": next(i for i, x in enumerate(m) if x is None),
        "close": next(i for i, x in enumerate(m) if x is not None and 0 < x <= 0.15),
    }
    for name, value in (("win", -0.2), ("loss", 0.1), ("neither", 0.5), ("close", -0.1)):
        cells[pick[name]]["margin_gpu"] = value
    dropped = next(i for i in range(len(cells)) if i not in pick.values())
    after["cells"].remove(cells[dropped])
    wins = sum(1 for c in before["cells"] if c["model"] == MODEL and (c["margin_gpu"] or 0) > 0)
    return before, after, {"pick": pick, "m": m, "wins": wins, "dropped": dropped}


def test_four_moved_cells_are_the_flips_and_nothing_else() -> None:
    before, after, moved = _moved()
    diffs = {d.model: d for d in diff_maps(before, after)}
    assert list(diffs) == ["llama-3.1-8b", "qwen2.5-32b", "llama-3.1-70b-fp8", "qwen3-30b-a3b"]
    d = diffs[MODEL]
    assert (d.only_before, d.only_after) == (1, 0)
    gpu, kw = d.metrics
    assert gpu.cells == kw.cells == 191  # 4 workloads x 3 GPU counts x 16 SLOs, one left out
    assert len(gpu.flips) == 4 and not kw.flips  # only per-GPU margins moved
    by_after = {f.after: f for f in gpu.flips}
    assert sorted(by_after) == [-0.2, -0.1, 0.1, 0.5]
    assert by_after[-0.1].marginal and not any(by_after[v].marginal for v in (-0.2, 0.1, 0.5))
    assert by_after[0.5].before is None
    # P/D pays: the raw count, minus the two moved away, plus the two moved to it (the dropped cell's
    # verdict is not compared)
    m = moved["m"]
    dropped_win = (m[moved["dropped"]] or 0) > 0
    assert gpu.wins_before == moved["wins"] - dropped_win and gpu.wins_after == gpu.wins_before
    # every other model: the same cells, no flip, no shift
    for other in ("qwen2.5-32b", "llama-3.1-70b-fp8", "qwen3-30b-a3b"):
        assert all(not x.flips and set(x.shifts) == {0.0} for x in diffs[other].metrics)


def test_the_cli_writes_the_comparison_and_reads_a_map_from_git(tmp_path: Path) -> None:
    before, after, _ = _moved()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "map.json").write_text(json.dumps(before))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "map.json"], ["commit", "-qm", "map"]):
        subprocess.run([*git, *cmd], check=True, capture_output=True)
    (repo / "map.json").write_text(json.dumps(after))  # the working copy: the moved map
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "break-even-diff", "HEAD:map.json", "map.json", "--out", "d.md"],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = (repo / "d.md").read_text()
    assert "## llama-3.1-8b (profile: measured)" in text
    assert "| per GPU | 191 |" in text and "| 4 | 2 | 2 | 1 |" in text  # flips, to P/D, away, marginal
    assert "Cells in one map only: 1 before, 0 after" in text
    assert text.count("| per GPU |") == 4 + 4  # one summary row per model + the four flips
    assert "| neither | +50% |" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.json", str(MAP)], "nope.json: no such file"),
        ([str(ROOT / "results/profiles/h200-8b.json"), str(MAP)], "is not a break-even map"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "planner", "break-even-diff", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr

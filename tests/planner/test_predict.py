"""`planner predict`: fixed setups and the best few per GPU count, per shape and SLO, as markdown + JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from planner.predict import SHAPES, predict
from planner.search import SearchConfig
from tests.planner.profiles import make_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILE = make_profile(prefill=(0.02, 4e-5, 0.0), decode=(0.004, 2e-4, 0.0), budget=2048)
SLOS = [{"ttft": 500.0, "tpot": 25.0}, {"ttft": 2000.0, "tpot": 50.0}]


def test_every_fixed_setup_and_the_best_per_gpu_count_at_every_slo() -> None:
    cfg = SearchConfig(SLOS[0], requests_per_gpu=60, min_requests=200)
    p = predict(
        PROFILE, {"prefill-heavy": SHAPES["prefill-heavy"]}, SLOS, cfg, ("1P1D", "replicas:2"), (3,), 2
    )
    assert [(x.result.setup.name, x.slo) for x in p.fixed] == [
        ("1P1D", SLOS[0]),
        ("1P1D", SLOS[1]),
        ("replicas:2", SLOS[0]),
        ("replicas:2", SLOS[1]),
    ]
    assert all(x.result.sustained_rps > 0 and x.result.j_per_request for x in p.fixed)
    best = [(x.slo, x.rank, x.result.setup.gpus) for x in p.best]
    assert best == [(SLOS[0], 1, 3), (SLOS[0], 2, 3), (SLOS[1], 1, 3), (SLOS[1], 2, 3)]
    first, second = (x.result for x in p.best[:2])
    assert first.goodput_per_gpu >= second.goodput_per_gpu
    doc = p.to_dict()
    assert doc["profile"]["source"] == "test" and doc["shapes"]["prefill-heavy"] == {
        "input_len": 2048,
        "output_len": 256,
    }
    assert "slo" not in doc["search"] and len(doc["fixed_setups"]) == 4 and len(doc["best"]) == 4


def test_the_command_writes_both_files_and_says_when_the_profile_is_not_measured(tmp_path: Path) -> None:
    profile = PROFILE.save(tmp_path / "p.json")
    out = tmp_path / "pred"
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "predict", "--profile", str(profile), "--out", str(out),
         "--shapes", "decode-heavy", "--setups", "1P1D,replicas:2", "--gpus", "3", "--top", "2",
         "--slo-grid", "ttft=500,2000 tpot=50", "--requests-per-gpu", "40", "--num-requests", "150"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["slo_grid"] == {"ttft": [500, 2000], "tpot": [50]}
    assert list(doc["shapes"]) == ["decode-heavy"] and len(doc["fixed_setups"]) == 4
    md = (out / "predictions.md").read_text()
    assert "**NOT predictions.** The profile is `test`" in md
    assert "## decode-heavy (512 -> 1024 tokens)" in md and "### Best on 3 GPUs" in md
    assert "| SLO (ms) | 1P1D | replicas:2 |" in md


def test_an_unknown_shape_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "predict", "--profile", "illustrative", "--out", str(tmp_path),
         "--shapes", "mixed"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown shape(s) ['mixed']")

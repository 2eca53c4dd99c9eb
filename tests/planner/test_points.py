"""Pre-registered point predictions: what `planner points predict` writes; `compare` on a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.model_dir import write_model_dir
from fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[2]


def planner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner", "points", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predictions_of_a_trace_shape_then_compared_with_its_measured_run(tmp_path: Path) -> None:
    pred = planner(
        "predict", "--profile", "illustrative", "--shapes", "azure-conv", "--rates", "20",
        "--num-requests", "40", "--out", str(tmp_path / "pred"),
    )  # fmt: skip
    assert pred.returncode == 0, pred.stderr
    doc = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    (point,) = doc["points"]
    # the campaign's count (the floor) and the trace's first 40 rows rescaled to a mean of exactly 20 req/s
    assert (point["shape"], point["rate"], point["requests"]) == ("azure-conv", 20.0, 40)
    assert point["offered_rate"] == pytest.approx(20.0)
    assert "before any of these points ran" in (tmp_path / "pred" / "predictions.md").read_text()
    # the run the campaign would make for that point, on a fake server, where compare looks for it
    run_dir = tmp_path / "measured" / "azure-conv" / "single"
    with FakeUpstream(root=str(write_model_dir(tmp_path / "model")), max_model_len=32768) as srv:
        proc = subprocess.run(
            [
                sys.executable, "run_experiment.py", "--endpoint", srv.url, "--workload", "trace",
                "--dataset", "data/traces/azure_conv_2023-head3000.csv", "--rate", "20",
                "--num-requests", "40", "--warmup", "0", "--monitor", "none", "--idle-seconds", "0",
                "--output-dir", str(run_dir), "--tag", "rate20",
            ],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    comp = planner("compare", "--predictions", str(tmp_path / "pred" / "predictions.json"), "--measured",
                   str(tmp_path / "measured"))  # fmt: skip
    assert comp.returncode == 0, comp.stderr
    (row,) = json.loads((tmp_path / "pred" / "comparison.json").read_text())["rows"]
    assert row["requests"] == 40 and row["failed"] == 0 and row["arrival_rate"] == pytest.approx(20, rel=0.1)
    m, p = row["measured"]["ttft_p50_ms"], row["predicted"]["ttft_p50_ms"]
    assert row["error"]["ttft_p50_ms"] == pytest.approx((p - m) / m)
    assert row["measured"]["j_per_request"] is None and row["error"]["j_per_request"] is None  # no monitor
    assert "| azure-conv | 20 |" in comp.stdout


def test_unknown_shapes_and_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    bad = planner("predict", "--profile", "illustrative", "--shapes", "nope", "--out", str(tmp_path))
    assert bad.returncode == 2 and "unknown shape(s) ['nope']" in bad.stderr
    other = tmp_path / "x.json"
    other.write_text("{}")
    foreign = planner("compare", "--predictions", str(other), "--measured", str(tmp_path))
    assert foreign.returncode == 2 and "is not a `planner points predict` file" in foreign.stderr

"""The demo's GPU half as a user runs it (`python -m demo --h200-only`): the committed 2 x H200 runs
rendered into reports and plots, without a GPU or vLLM."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.markdown import fmt
from analysis.runs import CompareError
from demo.h200 import POINT, SOURCE, render_h200x2
from experiments.schema import RunResult
from tests.analysis.golden import REPO

PNG = b"\x89PNG\r\n\x1a\n"
SETUPS = ("1 instance", "1P1D p2p_nccl GET", "2 replicas")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "--h200-only", "--output-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out / "h200x2", proc.stdout


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_single_load_report_has_every_setup_and_the_energy_plots(rendered: tuple[Path, str]) -> None:
    out, _ = rendered
    shape, rate = POINT
    point = out / f"{shape}-rate{rate:g}"
    report = (point / "report.md").read_text()
    assert all(f"| {s} " in report or f" {s} |" in report for s in SETUPS)
    for plot in ("power_timeline", "energy_bars", "cdf_ttft"):
        assert _is_png(point / f"{plot}.png")
        assert f"]({plot}.png)" in report


def test_one_sweep_report_per_shape_with_the_load_curves(rendered: tuple[Path, str]) -> None:
    out, _ = rendered
    shapes = sorted(p.name for p in SOURCE.iterdir() if p.is_dir() and any(p.rglob("result.json*")))
    assert {"decode-heavy-short", "prefill-heavy", "prefill-only"} <= set(shapes)
    for shape in shapes:
        sweep = out / f"frontier-{shape}"
        assert "## Load sweep" in (sweep / "report.md").read_text()
        assert _is_png(sweep / "latency_vs_load.png") and _is_png(sweep / "pareto.png")
        assert not (sweep / "power_timeline.png").exists()  # per-run plots only in the single-load report


def test_index_links_resolve_and_its_headline_matches_the_results(rendered: tuple[Path, str]) -> None:
    out, stdout = rendered
    index = (out / "index.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert len(links) >= 9 and all((out / link).is_file() for link in links)
    # the pair's TPOT p50 at the single load, as the schema's own summary has it
    shape, rate = POINT
    pd_run = next((SOURCE / shape / "pd").glob(f"*-rate{rate:g}"))
    tpot = fmt(RunResult.load(pd_run).summary.tpot_ms.p50)
    assert re.search(rf"\| 1P1D p2p_nccl GET \| [^|]+ \| {re.escape(tpot)} \|", index)
    # the console says where everything went
    for path in (out / "index.md", *(out.glob("*/report.md"))):
        assert str(path) in stdout
    assert re.search(rf"1P1D p2p_nccl GET +\S+ +{re.escape(tpot)} ", stdout)


def test_missing_results_say_how_to_restore_them(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="git checkout --"):
        render_h200x2(tmp_path / "out", source=tmp_path / "empty")

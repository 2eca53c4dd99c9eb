"""compare_performance.py over the golden results: table values against hand-computed numbers, the report
and its plots, refusal of incomparable runs, incomplete runs, missing energy, and the review notebook.

The golden results (tests/golden/, written by tests/golden/make_golden.py) hold 3 measured requests each,
all with 4 output tokens, sent at t = 0, 1 and 2 s:
  traditional: TTFT 100/200/300 ms, gaps 30 ms (the last request 30, 30, 140 ms), last token at 2.5 s;
               GPU 0 serving 300 J, GPU 1 idle 50 J over 2.5 s, idle power 40 W and 20 W.
  disagg:      TTFT 50/60/400 ms, gaps 20 ms (the last request 20, 20, 60 ms), last token at 2.5 s;
               GPU 0 prefill 150 J, GPU 1 decode 180 J; stages (prefill, decode first chunk, proxy
               overhead) 30/15/3, 35/20/3, 300/90/5 ms.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import orjson
import pytest
from nbclient import NotebookClient

from experiments import compare
from experiments.compare import Group, Row, compare_results, default_result_paths, stage_rows
from experiments.report_plots import pareto_front
from experiments.results import ResultWriter, load

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
TRAD, DIS = GOLDEN / "traditional", GOLDEN / "disagg"
OTHER, CRASHED = GOLDEN / "other_model", GOLDEN / "incomplete_disagg"
SWEEP = [GOLDEN / "sweep" / f"rate{r}" for r in (1, 2, 4)]
BASE_PLOTS = ("cdf_ttft", "cdf_itl", "cdf_e2e", "itl_over_time", "power_timeline", "energy_bars")
SWEEP_PLOTS = ("latency_vs_load", "pareto")


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "compare_performance.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def row(group: Group, label: str) -> Row:
    return next(r for r in group.rows if r.title == label)


def approx(values: list, expected: list) -> bool:
    return all(
        (v is None and e is None) or (v is not None and e is not None and v == pytest.approx(e))
        for v, e in zip(values, expected, strict=True)
    )


def nums(group: Group, label: str) -> list[float | None]:
    r = row(group, label)
    return [r.number(i) for i in range(len(group.runs))]


# ---------------------------------------------------------------- table values


def test_table_values_match_hand_computed_numbers() -> None:
    cmp = compare_results([DIS, TRAD], slo={"ttft": 150})
    (g,) = cmp.groups
    assert [r.label for r in g.runs] == ["traditional", "disagg"] and g.baseline == 0
    assert not cmp.forced and not cmp.sweep

    assert approx(nums(g, "TTFT p50 (ms)"), [200, 60])  # medians of 100/200/300 and 50/60/400
    assert row(g, "TTFT p50 (ms)").ratios[1] == pytest.approx(60 / 200)
    assert g.verdict(row(g, "TTFT p50 (ms)")) == "disagg"
    # linear percentile: p90 of 3 values = second + 0.8 * (third - second)
    assert approx(nums(g, "TTFT p90 (ms)"), [200 + 0.8 * 100, 60 + 0.8 * 340])
    assert g.verdict(row(g, "TTFT p90 (ms)")) == "traditional"
    # TPOT = (E2E - TTFT) / 3: traditional 30, 30, 200/3; disagg 20, 20, 100/3
    assert approx(nums(g, "TPOT p50 (ms)"), [30, 20])
    assert approx(nums(g, "E2E p50 (ms)"), [290, 120])  # E2E 190/290/500 and 110/120/500
    assert approx(nums(g, "ITL p50 (ms)"), [30, 20])

    assert approx(nums(g, "request throughput (req/s)"), [3 / 2.5, 3 / 2.5])
    assert g.verdict(row(g, "request throughput (req/s)")) == "tie"
    assert approx(nums(g, "output token throughput (tok/s)"), [12 / 2.5, 12 / 2.5])
    # goodput recomputed for TTFT <= 150 ms: 1 and 2 requests in 2.5 s (higher is better)
    assert approx(nums(g, "goodput (req/s)"), [1 / 2.5, 2 / 2.5])
    assert row(g, "goodput (req/s)").ratios[1] == pytest.approx(2.0)
    assert g.verdict(row(g, "goodput (req/s)")) == "disagg"

    j_trad, j_dis = (300 + 50) / 3, (150 + 180) / 3
    assert approx(nums(g, "per request, all GPUs (J)"), [j_trad, j_dis])
    assert row(g, "per request, all GPUs (J)").ratios[1] == pytest.approx(j_dis / j_trad)
    assert g.verdict(row(g, "per request, all GPUs (J)")) == "disagg"
    # static = idle power x 2.5 s: (40 + 20) W x 2.5 s = 150 J in both runs
    assert approx(nums(g, "per request, all GPUs, static (J)"), [150 / 3, 150 / 3])
    assert approx(nums(g, "per request, all GPUs, dynamic (J)"), [200 / 3, 180 / 3])
    assert approx(nums(g, "per output token, all GPUs (J)"), [350 / 12, 330 / 12])
    assert approx(nums(g, "per request, serving GPUs (J)"), [300 / 3, 330 / 3])  # the idle GPU left out
    assert g.verdict(row(g, "per request, serving GPUs (J)")) == "traditional"
    assert approx(nums(g, "GPU 0 per request, dynamic (J)"), [(300 - 100) / 3, (150 - 100) / 3])
    assert approx(nums(g, "GPU 1 per output token, total (J)"), [50 / 12, 180 / 12])
    assert approx(nums(g, "GPU 1 average power (W)"), [50 / 2.5, 180 / 2.5])
    assert row(g, "GPU 1 average power (W)").best == []  # power is context, no verdict
    assert row(g, "GPU 0 role").values == ["serving", "prefill"]


def test_goodput_uses_the_measured_slo_without_slo_flag() -> None:
    (g,) = compare_results([TRAD, DIS]).groups  # measured with ttft <= 250, tpot <= 100
    assert approx(nums(g, "goodput (req/s)"), [2 / 2.5, 2 / 2.5])


def test_ttft_split_from_stage_timings() -> None:
    run = next(r for r in compare.load_runs([DIS]) if r.mode == "disagg")
    split = {name: (mean, p50) for name, mean, p50, _, _ in stage_rows(run)}
    assert split["prefill leg"] == (pytest.approx(365 / 3), pytest.approx(35))
    assert split["KV transfer + decode queue (decode first chunk)"][1] == pytest.approx(20)
    assert split["proxy overhead"][1] == pytest.approx(3)
    # what the proxy cannot see: TTFT - (prefill + first chunk + overhead) = 2, 2, 5 ms
    assert split["client side (network, event loop)"] == (pytest.approx(3), pytest.approx(2))
    assert sum(share for *_, share in stage_rows(run)) == pytest.approx(100)
    assert stage_rows(compare.load_runs([TRAD])[0]) is None


def test_pareto_front() -> None:
    # (latency, J/request): the last point is beaten by the second in both
    assert pareto_front([60, 100, 250, 298], [80, 60, 50, 116]) == [0, 1, 2]
    assert pareto_front([10, 10, 20], [5, 7, 1]) == [0, 2]


# ---------------------------------------------------------------- CLI, report, plots


def test_cli_writes_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = cli(TRAD, DIS / "result.json", "--slo", "ttft=150", "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    assert "disagg/traditional" in proc.stdout  # the terminal table
    report = (out / "report.md").read_text()
    assert "| TTFT p50 (ms) | 200.0 | **60.00** | 0.300 | disagg |" in report
    assert "| goodput (req/s) | 0.400 | **0.800** | 2.000 | disagg |" in report
    assert "| per request, all GPUs (J) | 116.7 | **110.0** | 0.943 | disagg |" in report
    assert "ttft ≤ 150 ms" in report and "## TTFT split" in report
    for stem in BASE_PLOTS:
        png = out / f"{stem}.png"
        assert png.stat().st_size > 1000, stem
        assert f"]({stem}.png)" in report
    assert not any((out / f"{s}.png").exists() for s in SWEEP_PLOTS)
    assert "need runs at several rates" in report


def test_cli_sweep_adds_load_curves_and_pareto(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = cli(TRAD, *SWEEP, "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    for stem in (*BASE_PLOTS, *SWEEP_PLOTS):
        assert (out / f"{stem}.png").stat().st_size > 1000, stem
    assert "## Load sweep" in report
    # the 4 req/s group pairs traditional with the sweep's 4 req/s run
    assert "| metric | traditional@4 | disagg@4 | disagg@4/traditional@4 | better |" in report
    assert "| disagg@2 | 2 req/s |" in report


def test_incomparable_runs_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = cli(TRAD, OTHER, "--output-dir", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: runs are not comparable: model differs")
    assert "Qwen2.5-7B-Instruct" in lines[0] and "--force" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()

    proc = cli(TRAD, OTHER, "--output-dir", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "warning: forced comparison" in proc.stderr
    assert "FORCED comparison (--force)" in (out / "report.md").read_text()


def test_rate_differs_outside_a_sweep_is_refused() -> None:
    proc = cli(TRAD, SWEEP[0], "--no-plots")
    assert proc.returncode == 2
    assert "offered load differs outside a sweep" in proc.stderr


def _copy_run(src: Path, dst: Path, meta_change: dict, energy: dict | None = None) -> Path:
    """A new run directory (real ResultWriter) with src's records and changed metadata."""
    res = load(src)
    meta = {**res.metadata, **meta_change}
    writer = ResultWriter(dst, meta)
    for rec in res.records:
        writer.append(rec)
    writer.add_section("stages", res.doc.get("stages"))
    writer.add_section("energy", res.energy if energy is None else energy)
    writer.finalize(res.summary)
    return dst


def test_hardware_and_workload_differences_are_named(tmp_path: Path) -> None:
    meta = load(TRAD).metadata
    inv = {**meta["gpu_inventory"], "gpus": [{"index": i, "name": "NVIDIA H100 80GB HBM3"} for i in (0, 1)]}
    config = orjson.loads(orjson.dumps(meta["config"]))
    config["workload"]["input_len"] = 1024
    other = _copy_run(TRAD, tmp_path / "h100", {"gpu_inventory": inv, "config": config})
    runs = compare.load_runs([TRAD, other])
    diffs = compare.differences(runs)
    assert any(d.startswith("hardware differs") and "H100" in d for d in diffs)
    assert any(d.startswith("input length differs") and "1024" in d for d in diffs)
    with pytest.raises(compare.NotComparable):
        compare.check_comparable(runs)
    assert compare.check_comparable(runs, force=True) == diffs


def test_incomplete_run_is_included_and_flagged(tmp_path: Path) -> None:
    cmp = compare_results([TRAD, CRASHED])
    crashed = next(r for r in cmp.runs if not r.complete)
    assert crashed.summary["measured"] == 2  # records recovered from requests.jsonl
    out = tmp_path / "report"
    proc = cli(TRAD, CRASHED, "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    assert "**disagg is INCOMPLETE**" in report
    assert "| metric | traditional | disagg (INCOMPLETE) |" in report
    assert "| per request, all GPUs (J) | 116.7 | n/a (run did not finish, no energy section) |" in report


def test_missing_energy_reads_na_with_reason_never_zero(tmp_path: Path) -> None:
    reason = "NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver); energy fields will be null"
    no_energy = {"available": False, "reason": reason, "gpus": None, "totals": None, "phases": None}
    cpu = _copy_run(TRAD, tmp_path / "cpu", {}, energy=no_energy)
    out = tmp_path / "report"
    proc = cli(cpu, DIS, "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    assert "| per request, all GPUs (J) | n/a (NVML unavailable) | 110.0 |  |  |" in report
    assert f"traditional: no energy: {reason}." in report
    assert (out / "power_timeline.png").stat().st_size > 1000  # disagg's panel, traditional's says why

    out2 = tmp_path / "report2"
    proc = cli(cpu, "--output-dir", out2)
    assert proc.returncode == 0, proc.stderr
    report = (out2 / "report.md").read_text()
    assert "power timelines skipped" in report and "energy bars skipped" in report
    assert not (out2 / "power_timeline.png").exists() and not (out2 / "energy_bars.png").exists()


def test_defaults_pick_newest_traditional_and_disagg(tmp_path: Path) -> None:
    assert default_result_paths(GOLDEN) == [TRAD / "result.json", DIS / "result.json"]
    shutil.copytree(GOLDEN / "sweep", tmp_path / "results" / "sweep")
    shutil.copytree(OTHER, tmp_path / "results" / "old")
    chosen = default_result_paths(tmp_path / "results")
    assert sorted(p.parent.name for p in chosen) == ["old", "rate1", "rate2", "rate4"]  # the whole sweep
    proc = cli("--results-dir", tmp_path / "empty", "--no-plots")
    assert proc.returncode == 2 and proc.stderr.startswith("error: no traditional or disagg results")


def test_bad_result_path_is_one_line_error() -> None:
    proc = cli(GOLDEN / "does-not-exist")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: no result at")


# ---------------------------------------------------------------- notebook


def test_review_notebook_executes_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_RESULTS", ",".join(str(p) for p in (TRAD, *SWEEP)))
    nb = nbformat.read(REPO / "experiments" / "review.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "experiments")}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| metric | traditional@4 | disagg@4 | disagg@4/traditional@4 | better |" in markdown
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(BASE_PLOTS) + len(SWEEP_PLOTS)

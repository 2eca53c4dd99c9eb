"""`planner break-even`: the map's code on the committed H200 profile (small settings, CPU), and its parts
on hand-made cases."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.model_dir import MoeRouting
from planner.break_even import (
    Cell,
    MapWorkload,
    ModelInput,
    Side,
    _margin,
    break_even,
    flips,
    per_kw,
    within_context,
)
from planner.fits import Fit
from planner.profile_model import DECODE_FEATURES, MOE_FEATURE, DecodeModel, load_profile
from planner.search import RunCache, SearchConfig, sustained_rate, workload_for
from planner.setups import parse_setup
from planner.workload import WorkloadSpec, fixed_lengths

ROOT = Path(__file__).resolve().parents[2]
PROFILE_8B = ROOT / "results" / "profiles" / "h200-8b-nixl.json"
TRACES = Path(__file__).resolve().parent / "data" / "traces"
SMALL = SearchConfig({"ttft": 1000.0}, precision=0.1, requests_per_gpu=40, min_requests=120)


def test_the_command_maps_the_committed_profile_for_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "map"
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "break-even", "--profile", f"llama-3.1-8b={PROFILE_8B}",
         "--out", str(out), "--traces", str(TRACES), "--gpus", "2,4", "--slo-grid", "ttft=500,2000 tpot=25",
         "--requests-per-gpu", "40", "--num-requests", "120", "--precision", "0.1",
         "--max-model-len", "16384"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "break_even.json").read_text())
    cells = doc["cells"]
    # 4 workloads x 2 SLOs x 2 GPU counts, each with a P/D side and an aggregated side.
    assert len(cells) == 16
    assert {c["workload"] for c in cells} == {"prefill-heavy", "decode-heavy", "azure-conv", "mooncake-conv"}
    for c in cells:
        pd, agg = parse_setup(c["pd"]["setup"]), parse_setup(c["agg"]["setup"])
        assert pd.disaggregated and pd.gpus == c["gpus"]
        assert not agg.disaggregated and agg.gpus in (1, c["gpus"])
        if c["agg"]["per_gpu"] > 0:
            assert c["margin_gpu"] == pytest.approx(c["pd"]["per_gpu"] / c["agg"]["per_gpu"] - 1)
    # The Mooncake slice's requests over 16,384 tokens (prompt + output), counted from the file: every
    # run reads all 300 rows (a workload spec asks for 1000 requests by default).
    rows = [json.loads(line) for line in (TRACES / "mooncake_conversation.jsonl").read_text().splitlines()]
    longer = sum(1 for r in rows if r["input_length"] + r["output_length"] > 16384)
    assert longer > 0 and doc["skipped_requests"]["llama-3.1-8b"]["mooncake-conv"] == longer
    readme = (out / "README.md").read_text()
    assert "**Partial map: llama-3.1-8b only.** No measured profile yet for qwen2.5-32b" in readme
    assert "### llama-3.1-8b" in readme and "**mooncake-conv**" in readme and "KV side:" in readme
    assert (out / "llama-3.1-8b" / "heatmap.png").stat().st_size > 10_000
    assert "| prefill-heavy | 2 | ttft<=500 tpot<=25 |" in (out / "llama-3.1-8b" / "table.md").read_text()


def test_a_two_gpu_cell_is_1p1d_against_the_better_of_one_instance_and_two_replicas() -> None:
    """Two models in one map (the 8B and a made-up MoE decode on it); the 2-GPU cell's sides equal the
    setups' own sustained rates, searched here directly."""
    prof = load_profile(PROFILE_8B)
    a, b, c, d = prof.decode.terms
    moe_fit = Fit((*DECODE_FEATURES, MOE_FEATURE), (a / 2, b, c, d, a / 16), 1.0, 0.0, 0.0, 5)
    moe = dataclasses.replace(prof, decode=DecodeModel(moe_fit, MoeRouting(128, 8)))
    models = [ModelInput("8b", prof, "8b.json"), ModelInput("moe-test", moe, "made up")]
    spec = WorkloadSpec(kind="random", input_len=2048, output_len=256)
    result = break_even(models, [MapWorkload("prefill-heavy", spec)], [SMALL.slo], [2], SMALL)
    assert [(x.model, x.gpus) for x in result.cells] == [("8b", 2), ("moe-test", 2)]
    cell = result.cells[0]
    wl = {n: workload_for(spec, n, SMALL) for n in (1, 2)}

    def direct(setup: str, n: int) -> float:
        s = parse_setup(setup)
        return sustained_rate(
            prof, s, wl[n], SMALL, prof.engine, RunCache(prof, s, wl[n], SMALL, prof.engine)
        )

    one, two, pd = direct("single", 1), direct("replicas:2", 2), direct("1P1D", 2)
    assert cell.pd.setup == "1P1D" and cell.pd.per_gpu == pytest.approx(pd.goodput_per_gpu)
    assert cell.agg.per_gpu == pytest.approx(max(one.goodput_per_gpu, two.goodput_per_gpu))
    assert cell.agg.setup == max((one, two), key=lambda r: r.goodput_per_gpu).setup.name
    # The made-up MoE's decode step is ~4x the 8B's at batch 64 (128 experts x a/16 + a/2), so its
    # 1P1D pair, which the decode side co-limits, sustains less.
    assert result.cells[1].pd.per_gpu < 0.97 * cell.pd.per_gpu


def test_within_context_drops_and_counts_the_requests_too_long() -> None:
    wl = fixed_lengths([100, 5000, 700, 990], [10, 10, 301, 10])  # 110, 5010, 1001, 1000 tokens
    kept, dropped = within_context(wl, 1000)
    assert dropped == 2 and kept.prompt_tokens.tolist() == [100, 990]
    assert within_context(wl, 10_000) == (wl, 0)
    with pytest.raises(ValueError, match="longer than 50"):
        within_context(wl, 50)


def test_margins_and_per_kw_by_hand() -> None:
    assert _margin(3.0, 2.0) == pytest.approx(0.5)
    assert _margin(1.0, 2.0) == pytest.approx(-0.5)
    assert _margin(1.0, 0.0) == math.inf and _margin(0.0, 0.0) is None and _margin(None, 1.0) is None
    prof = load_profile(PROFILE_8B)
    s = parse_setup("replicas:2")
    wl = workload_for(WorkloadSpec(input_len=512, output_len=64), 2, SMALL)
    r = sustained_rate(prof, s, wl, SMALL)
    e = r.at_sustained.energy  # type: ignore[union-attr]
    assert e.static_j is not None and e.dynamic_j is not None
    watts = (e.static_j + e.dynamic_j) / e.duration_s
    assert per_kw(r) == pytest.approx(r.sustained_rps * 1000 / watts)
    # Both GPUs idle the whole run at least: mean power >= 2 x idle.
    assert watts >= 2 * (prof.power.idle_w or 0)


def _cell(wl: str, ttft: float, tpot: float, pd: float, agg: float) -> Cell:
    p, a = Side("1P1D", 2, 2 * pd, pd, pd, 1.0), Side("replicas:2", 2, 2 * agg, agg, agg, 1.0)
    return Cell("m", wl, 2, {"ttft": ttft, "tpot": tpot}, p, a, p, a)


def test_flips_name_the_neighbouring_slos_where_the_winner_changes() -> None:
    cells = [
        _cell("w", 500, 10, 2.0, 1.0),  # P/D wins at a tight TPOT
        _cell("w", 500, 50, 1.0, 2.0),  # aggregated at a loose one
        _cell("w", 2000, 10, 2.0, 1.0),
        _cell("w", 2000, 50, 2.5, 2.0),  # a loose TTFT lets P/D win again
    ]
    assert flips(cells, lambda c: c.margin_gpu) == [
        "w 2 GPUs, ttft<=500: tpot 10 -> 50 ms (aggregated wins from there)",
        "w 2 GPUs, tpot<=50: ttft 500 -> 2000 ms (P/D wins from there)",
    ]

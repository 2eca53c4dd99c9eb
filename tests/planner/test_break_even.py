"""`planner break-even`: the map's code on the committed H200 profile (small settings, CPU), and its parts
on hand-made cases."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    parse_routes,
    per_kw,
    resolve_routes,
    within_context,
)
from planner.break_even_report import readme
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
    # An earlier map's README: its generated sections are replaced, the one written by hand is kept.
    out.mkdir()
    hand = "## Reading the map (by hand, 2026-12-05)\n\nP/D pays here because of X.\n"
    (out / "README.md").write_text(
        "# Where P/D pays: the break-even map\n\nold intro\n\n"
        + "## Per model: old numbers\n\n### stale-model\n\n"
        + hand
        + "\n## Uncertainty: what is measured and what is carried\n\nold provenance\n"
    )
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
    # The default routes; split is among each cell's P/D candidates, so the best P/D never trails it.
    assert doc["routes"] == ["split", "load", "threshold:p25", "threshold:p50", "threshold:p75"]
    assert all(c["route_gain"] is None or c["route_gain"] >= 0 for c in cells)
    # Only the Mooncake slice has prompt blocks: its sides report prefix hits, the others none.
    for c in cells:
        for side in (c["pd"], c["agg"]):
            assert (side["prefix_hit_rate"] is not None) == (
                c["workload"] == "mooncake-conv" and side["sustained_rps"] > 0
            )
    # The Mooncake slice's requests over 16,384 tokens (prompt + output), counted from the file: every
    # run reads all 300 rows (a workload spec asks for 1000 requests by default).
    rows = [json.loads(line) for line in (TRACES / "mooncake_conversation.jsonl").read_text().splitlines()]
    longer = sum(1 for r in rows if r["input_length"] + r["output_length"] > 16384)
    assert longer > 0 and doc["skipped_requests"]["llama-3.1-8b"]["mooncake-conv"] == longer
    readme = (out / "README.md").read_text()
    assert (
        "**Partial map: measured profiles for llama-3.1-8b only.** No measured profile yet for qwen2.5-32b"
        in (readme)
    )
    assert "### llama-3.1-8b" in readme and "**mooncake-conv**" in readme and "KV side:" in readme
    assert "stale-model" not in readme and "old intro" not in readme and "old provenance" not in readme
    assert readme.count(hand) == 1 and readme.count("## Uncertainty:") == 1
    assert readme.index("### llama-3.1-8b") < readme.index(hand) < readme.index("## Uncertainty:")
    assert "kept 1 section(s) written by hand" in proc.stdout and "Reading the map (by hand" in proc.stdout
    assert (out / "llama-3.1-8b" / "heatmap.png").stat().st_size > 10_000
    assert "| prefill-heavy | 2 | ttft<=500 tpot<=25 |" in (out / "llama-3.1-8b" / "table.md").read_text()


def test_a_two_gpu_cell_is_1p1d_against_the_better_of_one_instance_and_two_replicas() -> None:
    """Two models in one map (the 8B and a made-up MoE decode on it); the 2-GPU cell's sides equal the
    setups' own sustained rates, searched here directly."""
    prof = load_profile(PROFILE_8B)
    a, b, c, d = prof.decode.terms
    moe_fit = Fit((*DECODE_FEATURES, MOE_FEATURE), (a / 2, b, c, d, a / 16), 1.0, 0.0, 0.0, 5)
    moe = dataclasses.replace(
        prof,
        decode=DecodeModel(moe_fit, MoeRouting(128, 8)),
        provenance=dataclasses.replace(prof.provenance, source="derived"),
    )
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
    # The MoE's profile says it is derived: the README labels its section and its inputs as predictions.
    text = readme(result, None, "python -m planner break-even ...")
    assert "**Partial map: measured profiles for 8b only.** moe-test come from derived profiles" in text
    assert "### moe-test (derived profile: a prediction, not measured)" in text and "### 8b\n" in text
    inputs = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    assert "**derived, not measured**" in inputs["moe-test"] and "derived" not in inputs["8b"]


def test_within_context_drops_and_counts_the_requests_too_long() -> None:
    wl = fixed_lengths([100, 5000, 700, 990], [10, 10, 301, 10])  # 110, 5010, 1001, 1000 tokens
    kept, dropped = within_context(wl, 1000)
    assert dropped == 2 and kept.prompt_tokens.tolist() == [100, 990]
    assert within_context(wl, 10_000) == (wl, 0)
    with pytest.raises(ValueError, match="longer than 50"):
        within_context(wl, 50)


@pytest.mark.parametrize("folder", ["break-even", "break-even-slo-scale", "break-even-slo-cross"])
def test_the_committed_maps_profiles_still_load_and_map(folder: str) -> None:
    """Every profile a committed map names in its command loads and maps (one workload, 2 GPUs, small
    search): a profile the map rests on cannot break unseen. The MoE is priced with the CUDA-graph bound,
    as the maps' READMEs say."""
    command = json.loads((ROOT / "results" / "planner" / folder / "break_even.json").read_text())["command"]
    args = command.split()
    named = [args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--profile"]
    assert [n for n, _ in named] == ["llama-3.1-8b", "qwen2.5-32b", "llama-3.1-70b-fp8", "qwen3-30b-a3b"]
    models = [ModelInput(n, load_profile(ROOT / path), path) for n, path in named]
    assert models[3].profile.engine.cudagraph_max_tokens == 512
    assert [m.profile.provenance.source for m in models] == ["measured", "measured", "derived", "measured"]
    spec = WorkloadSpec(kind="random", input_len=2048, output_len=256)
    slo = {"ttft": 5000.0, "tpot": 200.0}  # loose: every model meets it on both sides
    result = break_even(models, [MapWorkload("prefill-heavy", spec)], [slo], [2], SMALL, routes=["split"])
    assert [c.model for c in result.cells] == [n for n, _ in named]
    for c in result.cells:
        assert c.pd.setup == "1P1D" and c.pd.per_gpu > 0 and c.agg.per_gpu > 0, c
    # the larger dense models sustain less per GPU than the 8B on both sides
    by = {c.model: c for c in result.cells}
    for big in ("qwen2.5-32b", "llama-3.1-70b-fp8"):
        assert (
            by[big].agg.per_gpu < by["llama-3.1-8b"].agg.per_gpu
            and by[big].pd.per_gpu < by["llama-3.1-8b"].pd.per_gpu
        )


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


def _csv_trace(path: Path, rows: list[tuple[int, int]]) -> Path:
    lines = ["timestamp,input_length,output_length"] + [
        f"{0.1 * i:.1f},{p},{o}" for i, (p, o) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_threshold_route_wins_the_cell_where_the_kv_transfer_breaks_every_split_request(
    tmp_path: Path,
) -> None:
    """A made-up connector whose transfer alone takes 400 ms, and a TTFT bound of 300 ms: no split
    request can meet it, so split P/D sustains nothing. 95% of the prompts are 64 tokens: threshold:p90
    (one token above that percentile, 64, so 65) serves exactly those locally on the decode instance, where
    a 64-token prompt's first token takes a few ms unloaded; 95% >= the 90% target, so the threshold route
    sustains a positive rate. The old map (split only) had a P/D side of zero here."""
    prof = load_profile(PROFILE_8B)
    prof = dataclasses.replace(prof, kv_transfer=dataclasses.replace(prof.kv_transfer, latency_s=0.4))
    rows = [(4096 if i % 20 == 19 else 64, 32) for i in range(200)]
    spec = WorkloadSpec(kind="trace", dataset=str(_csv_trace(tmp_path / "t.csv", rows)))
    cfg = SearchConfig({"ttft": 300.0}, precision=0.1, requests_per_gpu=40, min_requests=200)
    model, workload = ModelInput("8b", prof, "8b.json"), MapWorkload("short-mostly", spec)
    result = break_even([model], [workload], [cfg.slo], [2], cfg, routes=["split", "threshold:p90"])
    assert result.routes_searched == {"8b": {"short-mostly": ["split", "threshold:65"]}}
    (cell,) = result.cells
    assert cell.pd_split is not None and cell.pd_split.setup == "1P1D" and cell.pd_split.sustained_rps == 0
    assert cell.pd.setup == "1P1D threshold:65" and cell.pd.per_gpu > 0
    assert cell.pd.local_share == pytest.approx(0.95)  # the 190 short prompts of every 200
    assert cell.route_gain == math.inf
    doc = json.loads(json.dumps(result.to_dict(), default=str))
    assert doc["routes"] == ["split", "threshold:p90"] and doc["cells"][0]["route_gain"] == math.inf


def _mooncake_like(path: Path, n: int) -> Path:
    """`n` requests of 2048 prompt tokens (four 512-token blocks): the first three blocks shared by all, the
    fourth each request's own."""
    rows = [{"timestamp": 100 * i, "input_length": 2048, "output_length": 16, "hash_ids": [0, 1, 2, 3 + i]}
            for i in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cells_of_a_trace_with_shared_blocks_see_prefix_hits(tmp_path: Path) -> None:
    """Every request after an instance's first finds the three shared blocks in its cache: 1536 of its
    2048 prompt tokens. An instance given k of the run's requests serves 1536 (k - 1) / 2048 k of
    them, so with >= 20 requests per instance the hit rate lies in (0.7, 0.75]; a repeat (a run made
    longer for a steady state) adds new prompts and one more miss per instance, no free hits."""
    prof = load_profile(PROFILE_8B)
    spec = WorkloadSpec(kind="trace", dataset=str(_mooncake_like(tmp_path / "m.jsonl", 120)))
    plain = WorkloadSpec(kind="random", input_len=2048, output_len=16)
    cfg = SearchConfig({"ttft": 2000.0}, precision=0.1, requests_per_gpu=40, min_requests=120)
    result = break_even([ModelInput("8b", prof, "8b.json")],
                        [MapWorkload("mooncake-like", spec), MapWorkload("random", plain)], [cfg.slo], [2],
                        cfg, routes=["split"])  # fmt: skip
    like, rand = result.cells
    for side in (like.pd, like.agg, like.pd_kw, like.agg_kw):
        assert side.prefix_hit_rate is not None and 0.7 < side.prefix_hit_rate <= 0.75, side
    assert rand.pd.prefix_hit_rate is None and rand.agg.prefix_hit_rate is None  # no blocks, no cache
    hits = result.to_dict()["prefix_hit_rates"]["8b"]
    assert set(hits) == {"mooncake-like"} and 0.7 < hits["mooncake-like"]["pd"]["min"] <= 0.75


def test_a_repeated_trace_run_gets_no_hits_from_its_earlier_pass(tmp_path: Path) -> None:
    """One instance, 120 requests sharing three leading blocks: once, 119 of them hit 1536 of their 2048
    tokens. Twice over (the RunCache's way to lengthen a ramp), the second pass's prompts are new ones
    with the same reuse among them: one more miss, the same rate (were they the first pass again, every
    second-pass request would hit all but its last token)."""
    prof = load_profile(PROFILE_8B)
    spec = WorkloadSpec(
        kind="trace", dataset=str(_mooncake_like(tmp_path / "m.jsonl", 120)), num_requests=120
    )
    wl = workload_for(spec, 1, SMALL)
    runs = RunCache(prof, parse_setup("single"), wl, SMALL, prof.engine)
    once, twice = runs._run(0.5), runs._run(0.5, repeats=2)
    assert once.outcome.requests == 120 and twice.outcome.requests == 240
    assert once.outcome.prefix_hit_rate == pytest.approx(119 * 1536 / (120 * 2048))
    assert twice.outcome.prefix_hit_rate == pytest.approx(238 * 1536 / (240 * 2048))


def test_routes_resolve_per_workload_by_hand() -> None:
    prompts = np.array([100, 100, 100, 1000])
    # p50 of the prompts is 100: threshold:101 keeps the three short ones local (share 0.75); p25 splits
    # the same requests (dropped); threshold:50 splits all (= split), 5000 none (= local); 1000 = p50's.
    routes = [
        "split",
        "threshold:p50",
        "threshold:p25",
        "threshold:50",
        "threshold:5000",
        "threshold:1000",
        "load",
    ]
    assert resolve_routes(routes, prompts) == ["split", "threshold:101", "load:4096:32"]
    assert parse_routes("split, load ,threshold:p75,split") == ["split", "load", "threshold:p75"]
    for bad, why in (("load,threshold:1024", "lack split"), ("split,threshold:p100", "0 < NN < 100"),
                     ("split,threshold:px", "0 < NN < 100"), ("split,fast", "unknown policy")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_routes(bad)


def test_within_context_keeps_the_kept_requests_prompt_blocks() -> None:
    spec = WorkloadSpec(kind="trace", dataset=str(TRACES / "mooncake_conversation.jsonl"), num_requests=300)
    wl = workload_for(spec, 1, SMALL)
    kept, dropped = within_context(wl, 16384)
    assert wl.prefix is not None and kept.prefix is not None and dropped > 0
    keep = (wl.prompt_tokens + wl.output_tokens) <= 16384
    assert kept.prefix.chains == tuple(c for c, k in zip(wl.prefix.chains, keep, strict=True) if k)
    assert kept.trace == wl.trace


def test_pairs_mapped_on_two_processes_give_the_same_cells() -> None:
    """--jobs 2 maps the (model, workload) pairs in two spawned processes: every cell, route list and
    skipped count is the same as on one, in the same order; the README says which way it ran."""
    prof = load_profile(PROFILE_8B)
    moe = load_profile(ROOT / "results" / "profiles" / "h200-qwen3-30b-a3b-nixl.json")
    models = [ModelInput("8b", prof, "8b.json"), ModelInput("moe", moe, "moe.json")]
    workloads = [
        MapWorkload("prefill-heavy", WorkloadSpec(kind="random", input_len=2048, output_len=256)),
        MapWorkload("decode-heavy", WorkloadSpec(kind="random", input_len=512, output_len=1024)),
    ]
    args = (models, workloads, [SMALL.slo], [2], SMALL)
    one = break_even(*args, routes=["split", "load"])
    two = break_even(*args, routes=["split", "load"], jobs=2)
    assert (one.jobs, two.jobs) == (1, 2) and len(one.cells) == 4
    assert [c.to_dict() for c in two.cells] == [c.to_dict() for c in one.cells]
    assert (two.skipped, two.routes_searched) == (one.skipped, one.routes_searched)
    assert one.busy_s <= one.wall_s and two.busy_s > 0
    text = readme(one, None, "c")
    assert f"{one.wall_s:.0f} s to compute, {one.routes_wall_s:.0f} s of it on the routes" in text
    assert f"on 2 processes, which spent {two.busy_s:.0f} s in all" in readme(two, None, "c")
    assert break_even(*args, routes=["split"], jobs=8).jobs == 4  # never more processes than pairs
    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        break_even(*args, jobs=0)

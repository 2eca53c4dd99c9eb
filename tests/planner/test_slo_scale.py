"""The break-even map at SLO scales: bounds as multiples of one request's latency alone, per model and
workload (planner/slo_scale.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from planner.break_even import Cell, MapWorkload, ModelInput, Side, break_even, flips
from planner.profile_model import load_profile
from planner.search import SearchConfig
from planner.setups import parse_setup
from planner.simulate import simulate
from planner.slo_scale import parse_scales, unloaded
from planner.workload import WorkloadSpec

ROOT = Path(__file__).resolve().parents[2]
PROFILE_8B = ROOT / "results" / "profiles" / "h200-8b-nixl.json"
DERIVED = ROOT / "results" / "profiles" / "derived"
TRACES = Path(__file__).resolve().parent / "data" / "traces"
SMALL = SearchConfig({"ttft": 1.0}, precision=0.05, requests_per_gpu=100, min_requests=300)
PREFILL_HEAVY = WorkloadSpec(kind="random", input_len=2048, output_len=256)


def _raw(path: Path) -> dict:
    return json.loads(path.read_text())


def test_bounds_by_hand_from_the_profiles_coefficients() -> None:
    """8B, prefill-heavy (every prompt 2048 tokens, every output 256): TTFT alone = API server + one
    prefill step (2048 <= the 8192-token budget) + one output's lag; TPOT alone = a batch-1 decode step
    at 2048 + 256 / 2 tokens of context."""
    raw = _raw(PROFILE_8B)
    assert raw["engine"]["max_num_batched_tokens"] >= 2048
    fe, loop = raw["frontend"], raw["serving_loop"]
    pa, pb, pc = raw["prefill"]["fit"]["coefficients"]  # steps, tokens, attention_pairs
    a, b, c, d = raw["decode"]["fit"]["coefficients"]  # step, batch, context_sum, batch_sq
    ttft_s = (
        fe["latency_s"] + fe["per_token_s"] * 2048 + pa + pb * 2048 + pc * 2048 * 2048 + loop["per_output_s"]
    )
    tpot_s = a + b + c * (2048 + 128) + d
    result = break_even(
        [ModelInput("8b", load_profile(PROFILE_8B), "8b.json")],
        [MapWorkload("prefill-heavy", PREFILL_HEAVY)],
        [],
        [2],
        SMALL,
        routes=["split"],
        scales=[3, 10],
    )
    u = result.unloaded["8b"]["prefill-heavy"]
    assert (u.prompt_tokens, u.output_tokens) == (2048, 256)
    assert u.ttft_ms == pytest.approx(1e3 * ttft_s, rel=1e-9) and u.tpot_ms == pytest.approx(
        1e3 * tpot_s, rel=1e-9
    )
    # the searched SLOs are those multiples, rounded to 0.1 ms; one cell per scale, in order
    want = [{"ttft": round(s * 1e3 * ttft_s, 1), "tpot": round(s * 1e3 * tpot_s, 1)} for s in (3, 10)]
    assert [cell.slo for cell in result.cells] == want
    assert [cell.scale for cell in result.cells] == [3, 10]
    doc = result.to_dict()
    assert doc["slo_scales"] == [3, 10] and doc["slos"] == []
    assert doc["unloaded"]["8b"]["prefill-heavy"]["slos"] == {"3": want[0], "10": want[1]}


@pytest.mark.parametrize(
    "path", [PROFILE_8B, DERIVED / "h200-qwen2.5-32b.json", DERIVED / "h200-qwen3-30b-a3b.json"]
)
@pytest.mark.parametrize(("prompt", "output"), [(2048, 256), (512, 1024), (9000, 64)])
def test_a_simulated_request_alone_sees_the_unloaded_latency(path: Path, prompt: int, output: int) -> None:
    """One request on one instance, nothing else running: its TTFT and TPOT in the simulator. 9000 tokens
    take two prefill steps under the 8192-token budget."""
    prof = load_profile(path)
    run = simulate(prof, parse_setup("single"), np.array([prompt]), np.array([output]), np.array([0.0]))
    ttft_ms = 1e3 * (run.first_token_s[0] - run.arrival_s[0])
    tpot_ms = 1e3 * (run.end_s[0] - run.first_token_s[0]) / (output - 1)
    u = unloaded(prof, prompt, output)
    assert u.ttft_ms == pytest.approx(ttft_ms, rel=1e-6)
    assert u.tpot_ms == pytest.approx(tpot_ms, rel=1e-3)


def test_at_a_loose_scale_the_verdict_is_the_capacity_ratio() -> None:
    """At 50x (TTFT <= 3 s, TPOT <= 245 ms for the 8B on prefill-heavy) every setup meets the SLO up to
    capacity, so the sustained rates are the capacities: 1P1D's is its prefill instance's (2048-token
    prompts, each at least a*L/budget + b*L + c*L^2/2 of prefill), derived here by hand; one instance's is
    at most 1 / (that prefill + 255 decode tokens riding prefill steps at b + c*L each)."""
    prof = load_profile(PROFILE_8B)
    raw = _raw(PROFILE_8B)
    pa, pb, pc = raw["prefill"]["fit"]["coefficients"]
    a, b, c, d = raw["decode"]["fit"]["coefficients"]
    eng = raw["engine"]
    L, n_out = 2048, 256
    prefill_s = pa * L / eng["max_num_batched_tokens"] + pb * L + pc * L * L / 2
    max_batch = min(
        eng["max_num_seqs"], eng["kv_capacity_tokens"] // eng["block_size"] / math.ceil((L + n_out) / 16)
    )
    best_batch = min(max_batch, max(1.0, math.sqrt(a / d)))
    decode_s = n_out * (a / best_batch + d * best_batch + b + c * L)
    pd_cap = min(1 / prefill_s, 1 / decode_s)  # 1P1D, req/s
    assert pd_cap == pytest.approx(1 / prefill_s)  # prefill-bound: 46 ms of prefill against 1.4 ms of decode
    single_cap = 1 / (prefill_s + (n_out - 1) * (b + c * L))
    models, workloads = [ModelInput("8b", prof, "8b.json")], [MapWorkload("prefill-heavy", PREFILL_HEAVY)]
    result = break_even(models, workloads, [], [2], SMALL, routes=["split"], scales=[50])
    cell = result.cells[0]
    assert cell.pd.setup == "1P1D" and "capacity" in cell.pd.note
    # bisection to 5% below the capacity: the last rate met lies within it
    assert (1 - SMALL.precision) * pd_cap / 2 <= cell.pd.per_gpu <= pd_cap / 2
    assert 0.85 * single_cap <= cell.agg.per_gpu <= single_cap  # one instance or 2 replicas, per GPU
    # the verdict: the capacity ratio per GPU, -33% (one instance's bound is ~6% above what it sustains)
    assert cell.margin_gpu == pytest.approx(pd_cap / 2 / single_cap - 1, abs=0.08)
    assert cell.margin_gpu < 0


def _cell(scale: float, pd: float, agg: float) -> Cell:
    p, a = Side("1P1D", 2, 2 * pd, pd, pd, 1.0), Side("replicas:2", 2, 2 * agg, agg, agg, 1.0)
    return Cell("m", "w", 2, {"ttft": 100.0 * scale, "tpot": 5.0 * scale}, p, a, p, a, scale=scale)


def test_flips_run_along_the_scale() -> None:
    cells = [_cell(2, 0.5, 1.0), _cell(5, 2.0, 1.0), _cell(10, 2.0, 1.5)]
    assert flips(cells, lambda c: c.margin_gpu) == ["w 2 GPUs: scale 2 -> 5x (P/D wins from there)"]
    assert [c.label for c in cells] == ["scale 2x", "scale 5x", "scale 10x"]


def test_flips_of_a_cross_product_run_along_each_scale_at_the_other_fixed() -> None:
    """P/D wins only where TTFT is loose (10x) and TPOT tight (2x): one flip along the TPOT scale at
    TTFT 10x, one along the TTFT scale at TPOT 2x."""
    p, a = Side("1P1D", 2, 4.0, 2.0, 2.0, 1.0), Side("replicas:2", 2, 2.0, 1.0, 1.0, 1.0)

    def cell(t: float, q: float) -> Cell:
        pd, agg = (p, a) if (t, q) == (10, 2) else (a, p)
        return Cell("m", "w", 2, {"ttft": 100.0 * t, "tpot": 5.0 * q}, pd, agg, pd, agg, scale=(t, q))

    cells = [cell(t, q) for t in (2.0, 10.0) for q in (2.0, 3.0)]
    assert flips(cells, lambda c: c.margin_gpu) == [
        "w 2 GPUs, ttft 10x: tpot scale 2 -> 3x (aggregated wins from there)",
        "w 2 GPUs, tpot 2x: ttft scale 2 -> 10x (P/D wins from there)",
    ]
    assert [c.label for c in cells][:2] == ["ttft 2x tpot 2x", "ttft 2x tpot 3x"]


def _planner(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "planner", "break-even", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--slo-grid", "ttft=500 tpot=25", "--slo-scale", "2,5"], "not allowed with argument"),
        (["--slo-scale", "2,x"], "--slo-scale '2,x': give multiples of the unloaded latency, e.g. 2,3,5,10"),
        (["--slo-scale", "0.5,2"], "--slo-scale '0.5,2': give multiples above 1"),
        (["--slo-scale", "ttft=2,5"], "a cross product needs both ttft= and tpot= scales"),
        (["--slo-scale", "ttft=2 e2e=3"], "or a cross product, e.g. 'ttft=2,5,10 tpot=2,3'"),
        (["--slo-scale", "ttft=2 tpot=1"], "--slo-scale 'ttft=2 tpot=1': give multiples above 1"),
    ],
)
def test_bad_scale_flags_are_one_line_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    proc = _planner("--profile", f"8b={PROFILE_8B}", "--out", str(tmp_path), *flags)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="not both"):
        break_even([], [], [{"ttft": 500.0}], [2], SMALL, scales=[2])
    assert parse_scales("10,2,2") == [2.0, 10.0]
    assert parse_scales("tpot=3,2 ttft=10,2,10") == [(2.0, 2.0), (2.0, 3.0), (10.0, 2.0), (10.0, 3.0)]


def test_the_command_writes_a_scaled_map_with_its_resolved_bounds(tmp_path: Path) -> None:
    out = tmp_path / "map"
    proc = _planner("--profile", f"llama-3.1-8b={PROFILE_8B}", "--profile",
                    f"qwen2.5-32b={DERIVED / 'h200-qwen2.5-32b.json'}", "--out", str(out),
                    "--traces", str(TRACES), "--gpus", "2", "--workloads", "prefill-heavy,azure-conv",
                    "--slo-scale", "3,10", "--routes", "split", "--requests-per-gpu", "40",
                    "--num-requests", "120", "--precision", "0.1", "--max-model-len", "16384")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "break_even.json").read_text())
    assert len(doc["cells"]) == 2 * 2 * 2  # models x workloads x scales, one GPU count
    for c in doc["cells"]:
        u = doc["unloaded"][c["model"]][c["workload"]]
        assert c["slo"] == u["slos"][f"{c['scale']:g}"]
        assert c["slo"]["tpot"] == pytest.approx(c["scale"] * u["tpot_ms"], abs=0.05)
    # the 32B's decode step is ~3.7x the 8B's, and so is its TPOT bound at the same scale
    u8, u32 = (
        doc["unloaded"]["llama-3.1-8b"]["prefill-heavy"],
        doc["unloaded"]["qwen2.5-32b"]["prefill-heavy"],
    )
    assert 3 < u32["tpot_ms"] / u8["tpot_ms"] < 4.5
    # the azure slice's median lengths, from the file (lower median, as the map takes it)
    rows = [line.split(",") for line in (TRACES / "azure_conv_2023.csv").read_text().splitlines()[1:]]
    header = (TRACES / "azure_conv_2023.csv").read_text().splitlines()[0].split(",")
    ins = sorted(int(r[header.index("ContextTokens")]) for r in rows)
    assert doc["unloaded"]["llama-3.1-8b"]["azure-conv"]["prompt_tokens"] == ins[(len(ins) - 1) // 2]
    readme = (out / "README.md").read_text()
    assert "SLO scale: 3, 10 (DistServe's SLO scale" in readme and "SLO grid" not in readme
    assert "from which workload, GPU count and SLO scale P/D pays" in readme
    bounds = doc["unloaded"]["qwen2.5-32b"]["prefill-heavy"]["slos"]["3"]
    table = (out / "qwen2.5-32b" / "table.md").read_text()
    assert f"| prefill-heavy | 2 | scale 3x: ttft<={bounds['ttft']:g} tpot<={bounds['tpot']:g} |" in table
    assert "| qwen2.5-32b | prefill-heavy | 2048 -> 256 |" in table


def test_the_command_writes_a_cross_product_of_ttft_and_tpot_scales(tmp_path: Path) -> None:
    """`--slo-scale "ttft=2,10 tpot=2,3"`: four cells per workload and GPU count, each SLO the pair of
    scales times the latency alone; the README and tables name both scales."""
    out = tmp_path / "map"
    proc = _planner("--profile", f"llama-3.1-8b={PROFILE_8B}", "--out", str(out), "--traces", str(TRACES),
                    "--gpus", "2", "--workloads", "prefill-heavy", "--slo-scale", "ttft=2,10 tpot=2,3",
                    "--routes", "split", "--requests-per-gpu", "40", "--num-requests", "120",
                    "--precision", "0.1", "--max-model-len", "16384")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "break_even.json").read_text())
    u = doc["unloaded"]["llama-3.1-8b"]["prefill-heavy"]
    assert [c["scale"] for c in doc["cells"]] == [[2, 2], [2, 3], [10, 2], [10, 3]]
    for c in doc["cells"]:
        t, q = c["scale"]
        assert c["slo"] == {"ttft": round(t * u["ttft_ms"], 1), "tpot": round(q * u["tpot_ms"], 1)}
        assert u["slos"][f"ttft={t:g},tpot={q:g}"] == c["slo"]
    readme = (out / "README.md").read_text()
    assert "SLO scales, a cross product: TTFT scale 2, 10 x TPOT scale 2, 3" in readme
    # the command as recorded pastes back into a shell: the scales' space is quoted
    assert "--slo-scale 'ttft=2,10 tpot=2,3' --routes split" in readme and doc["command"] in readme
    ttft = f"{round(2 * u['ttft_ms'], 1):g}, {round(10 * u['ttft_ms'], 1):g}"
    assert (
        "| TTFT bounds (ms) at 2x, 10x | TPOT bounds (ms) at 2x, 3x |" in readme and f"| {ttft} |" in readme
    )
    c = doc["cells"][2]
    table = (out / "llama-3.1-8b" / "table.md").read_text()
    assert (
        f"| prefill-heavy | 2 | ttft 10x tpot 2x: ttft<={c['slo']['ttft']:g} tpot<={c['slo']['tpot']:g} |"
        in table
    )

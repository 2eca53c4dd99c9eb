"""`python -m planner merge`: several profile runs of one instance become one profile, refitted."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.schema import to_builtins
from planner.merge import merge_profiles
from planner.profile_model import (
    DecodePoint,
    EngineLimits,
    FrontendModel,
    PowerPoint,
    PrefillPoint,
    Profile,
    ProfileError,
    Provenance,
    build_profile,
    load_profile,
    prefill_features,
)
from planner.profile_run import fit_frontend
from tests.planner.profiles import make_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "results" / "profiles"
PD_RUN = ROOT / "results/h200x2/frontier/prefill-heavy/pd/20261129-203423-disagg-rate4"
LIMITS = EngineLimits(8192, 1024, 900_000)


def prefill_s(n: int) -> float:
    steps, tokens, _ = prefill_features(n, LIMITS.max_num_batched_tokens)
    return 0.004 + 1e-6 * n + 0.007 * steps + 2e-5 * tokens  # API server + its steps


def decode_s(b: int, c: float) -> float:
    return 0.0048 + 7e-6 * b + 2.7e-8 * b * c + 6e-8 * b * b


def run(sizes: tuple[int, ...], batches: tuple[int, ...], created: str, api: bool = True) -> Profile:
    """One profile run that measured these prefill sizes and decode batches (exact model, no noise)."""
    fe = fit_frontend([(n, 0.004 + 1e-6 * n) for n in sizes]) if api else FrontendModel()
    decode = [DecodePoint(b, float(c), decode_s(b, c)) for b in batches for c in (640, 2176)]
    power = [PowerPoint("idle", 120.0, 5.0), PowerPoint("prefill", 680.0, 5.0)]
    power += [PowerPoint("decode", 450.0 + 40 * i, 2.0, batch=b) for i, b in enumerate(batches)]
    prov = Provenance("measured", "m", "NVIDIA H200", "0.23.0", created_iso=created)
    prefill = [PrefillPoint(n, prefill_s(n)) for n in sizes]
    return build_profile(prov, LIMITS, prefill, decode, make_profile().kv_transfer, power, frontend=fe)


def save(tmp: Path, name: str, prof: Profile) -> Path:
    return prof.save(tmp / name)


def test_points_are_unioned_and_every_model_refitted(tmp_path: Path) -> None:
    first = save(tmp_path, "a.json", run((256, 1024, 2048), (1, 4, 16, 64), "t1"))
    second = save(tmp_path, "b.json", run((4096, 8192, 16384), (128, 256), "t2"))
    merged = merge_profiles([first, second])
    assert [p.prompt_tokens for p in merged.prefill_points] == [256, 1024, 2048, 4096, 8192, 16384]
    assert sorted({p.batch for p in merged.decode_points}) == [1, 4, 16, 64, 128, 256]
    # One run alone cannot fit the batch^2 term over batches <= 64 well; together the exact model returns.
    assert merged.decode.step_s(200, 200 * 1000.0) == pytest.approx(decode_s(200, 1000.0), rel=1e-6)
    sizes = (256, 1024, 2048, 4096, 8192, 16384)
    assert merged.frontend.points == tuple((n, 0.004 + 1e-6 * n) for n in sizes)
    assert merged.frontend.latency_s == pytest.approx(0.004) and merged.prefill.fit.max_rel_error < 1e-6
    assert len(merged.power_points) == 2 * 2 + 6 and merged.power.idle_w == pytest.approx(120.0)
    assert "merged from" in merged.provenance.notes and "t1" in merged.provenance.notes
    assert "KV side as in" in merged.provenance.notes


def test_a_later_run_replaces_the_same_measurement(tmp_path: Path) -> None:
    a = run((256, 1024, 2048), (1, 4, 16, 64), "t1")
    slower = dataclasses.replace(a.decode_points[0], context_tokens=650.0, step_s=0.1)
    b = dataclasses.replace(a, decode_points=(slower,), prefill_points=(PrefillPoint(256, 0.5),))
    merged = merge_profiles([save(tmp_path, "a.json", a), save(tmp_path, "b.json", b)])
    assert len(merged.decode_points) == len(a.decode_points)
    assert slower in merged.decode_points and a.decode_points[0] not in merged.decode_points
    assert [p.latency_s for p in merged.prefill_points if p.prompt_tokens == 256] == [0.5]


def test_a_schema_2_file_lends_its_api_server_fit_at_its_prefill_sizes(tmp_path: Path) -> None:
    old = run((256, 1024, 2048), (1, 4, 16, 64), "t1")
    old = dataclasses.replace(old, frontend=dataclasses.replace(old.frontend, points=()))
    merged = merge_profiles(
        [
            save(tmp_path, "old.json", old),
            save(tmp_path, "new.json", run((4096, 8192, 16384), (128, 256), "t2")),
        ]
    )
    assert [n for n, _ in merged.frontend.points] == [256, 1024, 2048, 4096, 8192, 16384]
    assert "old.json its fit at its prefill sizes" in merged.frontend.source


def test_profiles_of_different_instances_are_refused(tmp_path: Path) -> None:
    a = run((256, 1024, 2048), (1, 4, 16, 64), "t1")
    b = dataclasses.replace(a, engine=dataclasses.replace(LIMITS, max_num_batched_tokens=2048))
    with pytest.raises(ProfileError, match="differ in engine limits"):
        merge_profiles([save(tmp_path, "a.json", a), save(tmp_path, "b.json", b)])
    c = dataclasses.replace(a, provenance=dataclasses.replace(a.provenance, vllm_version="0.26.0"))
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "merge", str(save(tmp_path, "a.json", a)),
         str(save(tmp_path, "c.json", c)), "--output", str(tmp_path / "m.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "differ in vLLM version (0.26.0 vs 0.23.0)" in proc.stderr
    assert not (tmp_path / "m.json").exists()


def test_the_committed_h200_profile_is_the_merge_of_its_two_runs(tmp_path: Path) -> None:
    """The two H200 runs (prefill to 2k, decode to batch 64; then 4k-16k and batch 128/256) merge into
    the committed profile, KV side from the 1P1D run, with the fits' stated errors."""
    runs = [PROFILES / "h200-8b-run1.json", PROFILES / "h200-8b-run2.json"]
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "merge", *map(str, runs), "--output", str(tmp_path / "m.json"),
         "--pd-result", str(PD_RUN)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    merged, committed = load_profile(tmp_path / "m.json"), load_profile(PROFILES / "h200-8b.json")
    same = ("prefill", "decode", "power", "frontend", "engine", "kv_points")
    # Equal to within float rounding: least squares on another machine's BLAS differs in the last bits.
    assert approx_tree(to_builtins({k: getattr(merged, k) for k in same})) == to_builtins(
        {k: getattr(committed, k) for k in same}
    )
    kv, kv_committed = merged.kv_transfer, committed.kv_transfer  # their sources name the run's path
    assert (kv.latency_s, kv.prefill_overhead_s) == pytest.approx(
        (kv_committed.latency_s, kv_committed.prefill_overhead_s), rel=1e-9
    )
    assert merged.prefill.fit.max_rel_error < 0.05 and merged.decode.fit.max_rel_error < 0.06
    assert merged.kv_transfer.prefill_hold and str(PD_RUN.name) in merged.kv_transfer.source
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["schema_version"] == 5 and doc["decode"]["fit"]["features"][-1] == "batch_sq"


def test_a_schema_2_profile_reads_with_no_batch_squared_term() -> None:
    old = load_profile(PROFILES / "h200-8b-run1.json")
    a, b, c, d = old.decode.terms
    assert d == 0.0 and old.frontend.points == ()
    assert old.decode.step_s(64, 64 * 1000.0) == pytest.approx(a + 64 * b + c * 64_000)


def approx_tree(value: object) -> object:
    """`value` (plain JSON values) with every float wrapped in pytest.approx (relative 1e-9)."""
    if isinstance(value, dict):
        return {k: approx_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [approx_tree(v) for v in value]
    return pytest.approx(value, rel=1e-9) if isinstance(value, float) else value

"""The MoE decode term: a step's cost follows the distinct experts its batch touches (hand-made points)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.model_dir import MoeRouting
from planner.engine import DECODE, IDLE, Engine, Requests
from planner.fits import Fit
from planner.kv_transfer import default_kv_transfer
from planner.profile_model import (
    DECODE_FEATURES,
    MOE_FEATURE,
    DecodeModel,
    DecodePoint,
    Profile,
    experts_touched,
    fit_decode,
    load_profile,
)
from planner.search import capacity_bound
from planner.setups import parse_setup
from planner.simulate import simulate
from planner.workload import fixed_lengths
from tests.planner.profiles import make_profile

QWEN3 = MoeRouting(experts=128, per_token=8)
A, B, C, D, E = 0.004, 4e-6, 2e-8, 0.0, 5e-5  # s, s/seq, s/context token, s/seq^2, s per expert touched


def true_step(batch: int, context_sum: float) -> float:
    return A + B * batch + C * context_sum + D * batch**2 + E * float(experts_touched(batch, QWEN3))


def test_experts_touched_by_hand() -> None:
    # One token: its 8 experts. Two: 128 * (1 - (120/128)^2) = 15.5. Many: all 128.
    assert float(experts_touched(1, QWEN3)) == pytest.approx(8.0)
    assert float(experts_touched(2, QWEN3)) == pytest.approx(128 * (1 - (120 / 128) ** 2))
    assert float(experts_touched(2, QWEN3)) == pytest.approx(15.5)
    assert float(experts_touched(1000, QWEN3)) == pytest.approx(128.0, rel=1e-12)
    assert float(experts_touched(4, MoeRouting(4, 4))) == 4.0  # every expert, every token


def test_the_experts_term_is_fitted_where_a_dense_fit_cannot_follow() -> None:
    """Points at the profile's batch sizes: the step rises steeply to batch ~64 (experts), then slowly.
    The MoE fit recovers the coefficients; the dense one, forced non-negative, misses by > 10%."""
    pts = [
        DecodePoint(b, float(c), true_step(b, b * c)) for b in (1, 4, 16, 64, 128, 256) for c in (640, 2176)
    ]
    moe = fit_decode(pts, QWEN3)
    assert moe.routing == QWEN3 and moe.fit.features == (*DECODE_FEATURES, MOE_FEATURE)
    assert moe.fit.coefficient(MOE_FEATURE) == pytest.approx(E, rel=1e-6)
    assert moe.terms == pytest.approx((A, B, C, D), abs=1e-12)
    assert moe.fit.max_rel_error < 1e-9
    assert moe.step_s(32, 32 * 1000.0) == pytest.approx(true_step(32, 32 * 1000.0), rel=1e-9)
    dense = fit_decode(pts)
    assert dense.routing is None and dense.fit.max_rel_error > 0.10
    # Too few points for five terms: the routing is dropped, not fitted on nothing.
    assert fit_decode(pts[:4], QWEN3).routing is None


def test_a_profile_keeps_its_routing_through_save_and_load() -> None:
    prof = moe_profile()
    back = Profile.from_dict(prof.to_dict())
    assert back.decode == prof.decode and back.decode.routing == QWEN3
    assert prof.to_dict()["schema_version"] == 5 and "MoE: experts_touched" in prof.describe()
    dense = make_profile()
    assert Profile.from_dict(dense.to_dict()).decode.routing is None


def moe_profile() -> Profile:
    base = make_profile(prefill=(0.01, 1e-5, 0.0), decode=(A, B, C, D), max_seqs=512)
    fit = Fit((*DECODE_FEATURES, MOE_FEATURE), (A, B, C, D, E), 1.0, 0.0, 0.0, 5)
    return dataclasses.replace(base, decode=DecodeModel(fit, QWEN3))


@pytest.mark.parametrize("n", [1, 8, 64])
def test_a_decode_instance_steps_at_the_moe_step_time(n: int) -> None:
    """n requests wait on a decode instance; they join one step and decode as one batch, each step over
    a context one token longer per sequence: step j costs A + B n + C n (prompt + j) + E touched(n)."""
    prompt, out = 100, 50
    prof = moe_profile()
    reqs = Requests([prompt] * n, [out] * n)
    engine = Engine(0, DECODE, prof, prof.engine, reqs)
    engine.ready.extend(range(n))  # their KV arrived: they join the batch directly
    t = engine.start_run(0.0)
    while t != IDLE:
        engine.finish_run(t)
        t = engine.start_run(t)
    first, end = np.array(reqs.first), np.array(reqs.end)
    assert np.allclose(first, true_step(n, n * prompt), rtol=1e-12)
    steps = [true_step(n, n * (prompt + j)) for j in range(1, out)]
    assert np.allclose(end - first, sum(steps), rtol=1e-9)


def test_the_capacity_bound_stays_above_the_simulated_rate_with_the_experts_term() -> None:
    """The bound's least decode share per token: min over B of (A + E touched(B))/B, by brute force."""
    prof = moe_profile()
    floor = min((A + E * float(experts_touched(b, QWEN3))) / b for b in range(1, 513))
    assert prof.decode.token_floor_s(512) == pytest.approx(floor, rel=1e-12)
    dense = dataclasses.replace(prof, decode=DecodeModel(prof.decode.fit, None))
    assert dense.decode.token_floor_s(512) == pytest.approx(A / 512, rel=1e-12)
    wl = fixed_lengths([256] * 400, [128] * 400)
    bound = capacity_bound(prof, parse_setup("1P1D"), wl, prof.engine)
    per_token = floor + B + C * 256
    assert bound <= 1 / (128 * per_token) * (1 + 1e-9)
    arrivals = np.linspace(0, 400 / (2 * bound), 400)  # offered at twice the bound
    res = simulate(prof, parse_setup("1P1D"), wl.prompt_tokens, wl.output_tokens, arrivals, rate=2 * bound)
    assert 400 / (res.end_s.max() - res.arrival_s.min()) < bound
    assert math.isfinite(bound)


def test_a_new_models_kv_side_is_carried_from_the_measured_8b_pair_at_its_own_kv_size(tmp_path: Path) -> None:
    """`planner kv --carry-from`: the 8B NIXL pair's fixed costs, the 32B shape's 262,144 B per token."""
    root = Path(__file__).resolve().parents[2]
    nixl = load_profile(root / "results" / "profiles" / "h200-8b-nixl.json")
    new = dataclasses.replace(nixl, kv_transfer=default_kv_transfer(262144.0))  # as a fresh 32B profile
    src = new.save(tmp_path / "p32.json")
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "kv", "--profile", str(src), "--carry-from",
         str(root / "results" / "profiles" / "h200-8b-nixl.json"), "--output", str(tmp_path / "out.json")],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    kv = load_profile(tmp_path / "out.json").kv_transfer
    measured = nixl.kv_transfer
    assert (kv.latency_s, kv.bandwidth_bytes_per_s, kv.prefill_overhead_s, kv.prefill_hold) == (
        measured.latency_s,
        measured.bandwidth_bytes_per_s,
        measured.prefill_overhead_s,
        measured.prefill_hold,
    )
    # 2048 tokens: the measured 21.7 ms + 2048 x 262,144 B at 300 GB/s (1.79 ms), twice the 8B's bytes.
    assert kv.transfer_s(2048) == pytest.approx(measured.latency_s + 2048 * 262144 / 300e9, rel=1e-12)
    assert kv.bytes_per_token == 2 * measured.bytes_per_token
    assert "carried from" in kv.source and "not measured on this model" in kv.source

"""Steps too large for a CUDA graph: the eager_steps prefill term, its fit, the simulator, old profiles."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.model_dir import shape_config
from experiments.schema import to_builtins
from planner.derive import derive_profile
from planner.fits import Fit, fit_nonnegative
from planner.prefill_model import EAGER_FEATURE, PREFILL_FEATURES, PrefillModel, prefill_features
from planner.profile_model import (
    DecodePoint,
    EngineLimits,
    PrefillPoint,
    Profile,
    ProfileError,
    Provenance,
    build_profile,
    fit_prefill,
    load_profile,
)
from planner.profile_run import cudagraph_bound
from planner.search import capacity_bound
from planner.setups import Setup, parse_setup
from planner.simulate import simulate
from planner.workload import fixed_lengths
from tests.planner.profiles import make_profile

ROOT = Path(__file__).resolve().parents[2]
A, B, C, E = 0.025, 2e-5, 1e-9, 0.065  # prefill a, b, c and the eager step's e (s), as on the H200 MoE
BUDGET, GRAPH = 8192, 512
# By hand, budget 8192 and graph bound 512: (prompt, steps, attention pairs, eager chunks); the 16384
# prompt is two 8192 chunks, the second at offset 8192: 8192^2 + 8192 * 16384 pairs.
BY_HAND = [
    (256, 1, 256**2, 0),
    (512, 1, 512**2, 0),
    (1024, 1, 1024**2, 1),
    (2048, 1, 2048**2, 1),
    (4096, 1, 4096**2, 1),
    (8192, 1, 8192**2, 1),
    (16384, 2, 8192**2 + 8192 * 16384, 2),
]


def points(e: float = E) -> list[PrefillPoint]:
    return [PrefillPoint(n, A * s + B * n + C * p + e * k) for n, s, p, k in BY_HAND]


def eager_profile(graph: int, prefill: tuple[float, float, float], decode: tuple[float, ...]) -> Profile:
    """make_profile's, with the eager term E and a CUDA-graph bound (as a refitted profile has them)."""
    prof = make_profile(prefill=prefill, decode=decode, budget=4096)
    fit = Fit((*PREFILL_FEATURES, EAGER_FEATURE), (*prefill, E), 1.0, 0.0, 0.0, 4)
    engine = dataclasses.replace(prof.engine, cudagraph_max_tokens=graph)
    return dataclasses.replace(prof, engine=engine, prefill=PrefillModel(fit, graph))


def stored(limits: EngineLimits) -> Profile:
    """A profile as `planner profile` writes one: fitted from raw points (the prefill ones above)."""
    decode = [
        DecodePoint(b, float(c), 0.005 + 1e-5 * b + 2e-8 * b * c) for b in (1, 4, 16) for c in (512, 2048)
    ]
    return build_profile(
        Provenance("measured", "m", "NVIDIA H200", "0.23.0"), limits, points(), decode,
        make_profile().kv_transfer, power_reason="test: no power",
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ the fit


def test_the_eager_features_count_chunks_over_the_graph_bound() -> None:
    for n, steps, pairs, eager in BY_HAND:
        assert prefill_features(n, BUDGET, GRAPH) == (steps, n, pairs, eager)
        assert prefill_features(n, BUDGET) == (steps, n, pairs)
    assert prefill_features(2048, 512, 512) == (4.0, 2048.0, 512.0 * (512 + 1024 + 1536 + 2048), 0.0)


def test_the_fit_recovers_the_eager_step_cost() -> None:
    """Exact points (no noise) from known a, b, c, e: the four columns are independent over these seven
    prompts, so least squares returns the generating coefficients; 1e-6 leaves room for float64 round-off
    in the relative weighting only (the three-feature fit misses them by tens of percent)."""
    model = fit_prefill(points(), BUDGET, graph_tokens=GRAPH)
    assert model.fit.features == (*PREFILL_FEATURES, EAGER_FEATURE)
    assert model.terms == pytest.approx((A, B, C), rel=1e-6)
    assert model.eager_s == pytest.approx(E, rel=1e-6) and model.graph_tokens == GRAPH
    assert model.fit.max_rel_error < 1e-6
    # the 1024-token prompt alone: a + b*1024 + c*1024^2 + e (one eager step)
    assert model.request_s(1024, BUDGET) == pytest.approx(A + B * 1024 + C * 1024**2 + E, rel=1e-6)
    assert model.step_s(1024, 1024**2) == pytest.approx(A + B * 1024 + C * 1024**2 + E, rel=1e-6)
    assert model.step_s(512, 512**2) == pytest.approx(A + B * 512 + C * 512**2, rel=1e-6)
    old = fit_prefill(points(), BUDGET)
    assert old.fit.max_rel_error > 0.2 and old.eager_s == 0.0


def old_fit(pts: list[PrefillPoint], budget: int) -> Fit:
    """The prefill fit as it was before the eager term: three features per prompt, by hand."""
    rows = []
    for p in pts:
        steps = math.ceil(p.prompt_tokens / budget)
        chunks = [min(budget, p.prompt_tokens - i * budget) for i in range(steps)]
        pairs = sum(c * (i * budget + c) for i, c in enumerate(chunks))
        rows.append((float(steps), float(p.prompt_tokens), float(pairs)))
    return fit_nonnegative(PREFILL_FEATURES, rows, [p.latency_s for p in pts], relative=True)


@pytest.mark.parametrize(
    ("sizes", "budget", "graph"),
    [
        ((256, 512, 1024, 2048, 4096, 8192, 16384), BUDGET, None),  # no bound
        ((256, 1024, 2048, 4096, 8192, 16384), BUDGET, GRAPH),  # one prompt under the bound
        ((256, 512, 1024), BUDGET, GRAPH),  # one over it
        ((256, 512, 1024, 2048, 4096), 512, GRAPH),  # chunks never exceed the budget <= the bound
    ],
)
def test_without_the_bound_or_two_prompts_each_side_the_fit_is_the_old_one(
    sizes: tuple[int, ...], budget: int, graph: int | None
) -> None:
    pts = [p for p in points() if p.prompt_tokens in sizes]
    model = fit_prefill(pts, budget, graph_tokens=graph)
    assert model.fit == old_fit(pts, budget)
    assert model.eager_s == 0.0 and model.graph_tokens == graph
    assert model.step_s(4096, 4096**2) == model.fit.predict((1.0, 4096.0, 4096.0**2))


# ------------------------------------------------------------------------------------------ the simulator


@pytest.mark.parametrize("second", [511, 512])
def test_a_mixed_step_over_the_bound_pays_the_eager_cost(second: int) -> None:
    """Two requests at t=0 on one instance (as tests/planner/test_simulate.py, by hand): the first
    prefills alone (100 tokens), the second's prompt rides with the first's decode: 511 + 1 = 512 tokens
    fit the graph, 512 + 1 do not and cost E more."""
    (a, b, c), (da, db, dc) = (0.01, 2e-5, 1e-9), (0.004, 1e-4, 1e-7)
    prof = eager_profile(GRAPH, (a, b, c), (da, db, dc))
    wl = fixed_lengths([100, second], [3, 1])
    res = simulate(prof, Setup(0, 1), wl.prompt_tokens, wl.output_tokens, np.array([0.0, 0.0]))
    step1 = a + b * 100 + c * 100**2
    step2 = a + b * second + c * second**2 + db * 1 + dc * 101 + (E if second + 1 > GRAPH else 0.0)
    assert res.first_token_s == pytest.approx([step1, step1 + step2], rel=1e-12)


def test_a_decode_batch_over_the_bound_pays_the_eager_cost() -> None:
    """Bound 1 token: every prefill step and every decode step of batch 2 runs eagerly; batch 1 does not."""
    (a, b, c), (da, db, dc) = (0.01, 2e-5, 1e-9), (0.004, 1e-4, 1e-7)
    prof = eager_profile(1, (a, b, c), (da, db, dc))
    wl = fixed_lengths([100, 100], [3, 3])
    res = simulate(prof, Setup(0, 1), wl.prompt_tokens, wl.output_tokens, np.array([0.0, 0.0]))
    t1 = a + b * 100 + c * 100**2 + E  # first prompt alone
    t2 = t1 + a + b * 100 + c * 100**2 + db + dc * 101 + E  # second prompt + the first's decode
    t3 = t2 + da + 2 * db + dc * (102 + 101) + E  # batch 2: the first's third token, it ends
    t4 = t3 + da + db + dc * 102  # batch 1 (<= the bound): the second's third token
    assert res.first_token_s == pytest.approx([t1, t2], rel=1e-12)
    assert res.end_s == pytest.approx([t3, t4], rel=1e-12)


def test_the_capacity_bound_with_eager_steps_stays_above_the_simulated_rate() -> None:
    """Prompts of 2048 tokens (each step over the 512 bound): the bound adds e*(L - 512)/budget and is
    still above what the simulator completes when offered twice the bound."""
    prof = eager_profile(GRAPH, (0.01, 2e-5, 1e-9), (0.004, 1e-4, 1e-7))
    wl = fixed_lengths([2048] * 300, [8] * 300)
    plain = dataclasses.replace(
        prof, prefill=PrefillModel(Fit(PREFILL_FEATURES, (0.01, 2e-5, 1e-9), 1, 0, 0, 3))
    )
    for setup in ("single", "1P1D"):
        bound = capacity_bound(prof, parse_setup(setup), wl, prof.engine)
        assert bound < capacity_bound(plain, parse_setup(setup), wl, prof.engine)
        arrivals = np.linspace(0, 300 / (2 * bound), 300)
        res = simulate(prof, parse_setup(setup), wl.prompt_tokens, wl.output_tokens, arrivals, rate=2 * bound)
        assert 300 / (res.end_s.max() - res.arrival_s.min()) < bound


# -------------------------------------------------------------------------------------- the profile file


@pytest.mark.parametrize(
    "name",
    ["h200-8b-nixl.json", "derived/h200-llama-3.1-70b-fp8.json", "derived/h200-qwen2.5-32b.json",
     "derived/h200-qwen3-30b-a3b.json"],
)  # fmt: skip
def test_old_profiles_load_without_the_bound_and_predict_as_before(name: str) -> None:
    prof = load_profile(ROOT / "results" / "profiles" / name)
    assert prof.engine.cudagraph_max_tokens is None and prof.prefill.graph_tokens is None
    assert prof.prefill.fit.features == PREFILL_FEATURES and prof.prefill.eager_s == 0.0
    a, b, c = (prof.prefill.fit.coefficient(f) for f in PREFILL_FEATURES)
    assert prof.prefill.terms == (a, b, c)
    n = 1000  # one step under the 8192-token budget: a + b*n + c*n^2
    assert prof.prefill.request_s(n, prof.engine.max_num_batched_tokens) == pytest.approx(
        a + b * n + c * n * n, rel=1e-12
    )
    assert prof.prefill.step_s(20000, 20000**2) == a + b * 20000 + c * 20000**2


def test_the_bound_and_the_eager_fit_round_trip_through_the_json(tmp_path: Path) -> None:
    limits = EngineLimits(BUDGET, 1024, 900_000, 16, "test", cudagraph_max_tokens=GRAPH)
    prof = stored(limits)
    assert prof.prefill.eager_s == pytest.approx(E, rel=1e-6)
    path = prof.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    assert data["engine"]["cudagraph_max_tokens"] == GRAPH
    again = load_profile(path)
    assert again.engine == limits and again.prefill == prof.prefill
    assert again.prefill.request_s(4096, BUDGET) == prof.prefill.request_s(4096, BUDGET)
    # a file without the key (written before it existed) loads as not modelled
    del data["engine"]["cudagraph_max_tokens"]
    data["prefill"]["fit"] = to_builtins(make_profile().prefill.fit)
    assert Profile.from_dict(data).engine.cudagraph_max_tokens is None
    # an eager term without its bound cannot be read
    data["prefill"] = json.loads(path.read_text())["prefill"]
    with pytest.raises(ProfileError, match="cudagraph_max_tokens"):
        Profile.from_dict(data)


# --------------------------------------------------------------------------------------------- the CLIs


def test_profile_sets_vllms_default_bound_on_a_gpu_unless_told() -> None:
    assert cudagraph_bound(None, 1024, gpu=True)[0] == 512  # min(2 x 1024, 512)
    assert cudagraph_bound(None, 128, gpu=True)[0] == 256  # min(2 x 128, 512)
    assert cudagraph_bound(None, 1024, gpu=False) == (None, "no CUDA graphs (CPU)")
    assert cudagraph_bound(0, 1024, gpu=True)[0] is None
    graph, why = cudagraph_bound(384, 1024, gpu=True)
    assert graph == 384 and "flag" in why
    with pytest.raises(ValueError, match="--cudagraph-max-tokens"):
        cudagraph_bound(-1, 1024, gpu=True)


def test_merge_refits_one_stored_profile_with_the_bound(tmp_path: Path) -> None:
    old = stored(EngineLimits(BUDGET, 1024, 900_000))
    assert old.prefill.eager_s == 0.0
    src = old.save(tmp_path / "old.json")
    out = tmp_path / "new.json"
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "merge", str(src), "--cudagraph-max-tokens", "512",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    new = load_profile(out)
    assert new.engine.cudagraph_max_tokens == GRAPH and new.prefill.eager_s == pytest.approx(E, rel=1e-6)
    assert "after the measurement" in new.provenance.notes and "after the measurement" in new.engine.source
    assert "0.065*eager_steps" in proc.stdout


def test_derive_carries_the_eager_term_and_the_bound() -> None:
    """planner/derive.py scales a, b, c by the model's shape and carries e and the bound unscaled."""
    base = load_profile(ROOT / "results/profiles/h200-8b-nixl.json")
    a, b, c = base.prefill.terms
    fit = Fit((*PREFILL_FEATURES, EAGER_FEATURE), (a, b, c, E), 1.0, 0.0, 0.0, 7)
    engine = dataclasses.replace(base.engine, cudagraph_max_tokens=GRAPH)
    eager = dataclasses.replace(base, engine=engine, prefill=PrefillModel(fit, GRAPH))
    configs = (shape_config("llama-3.1-8b"), shape_config("qwen2.5-32b"))
    plain = derive_profile(base, *configs, "qwen2.5-32b", "base")
    new = derive_profile(eager, *configs, "qwen2.5-32b", "base")
    assert new.prefill.terms == plain.prefill.terms and plain.prefill.eager_s == 0.0
    assert new.prefill.eager_s == E and new.prefill.graph_tokens == GRAPH
    assert new.engine.cudagraph_max_tokens == GRAPH and "carried unscaled" in new.provenance.notes

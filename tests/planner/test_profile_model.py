"""Profile file: fits with stated error, non-negative coefficients, versioned JSON round trip, KV fits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from planner.fits import FitError, fit_nonnegative
from planner.illustrative import illustrative_profile
from planner.kv_transfer import (
    default_kv_transfer,
    fit_kv_transfer,
    kv_points_from_stages,
    prefill_overhead_s,
)
from planner.profile_model import (
    PREFILL_FEATURES,
    SCHEMA_VERSION,
    DecodePoint,
    EngineLimits,
    FrontendModel,
    KvPoint,
    PowerPoint,
    PrefillPoint,
    ProfileError,
    Provenance,
    build_profile,
    fit_decode,
    fit_power,
    fit_prefill,
    load_profile,
    prefill_features,
)


def test_exact_data_is_recovered_with_zero_error() -> None:
    x = [(1.0, n, n * n) for n in (256, 1024, 4096, 8192)]
    y = [0.01 + 2e-5 * n + 1e-9 * n * n for _, n, _ in x]
    fit = fit_nonnegative(("steps", "tokens", "pairs"), x, y)
    assert fit.coefficients == pytest.approx((0.01, 2e-5, 1e-9), rel=1e-6)
    assert fit.r2 == pytest.approx(1.0) and fit.max_rel_error < 1e-9 and fit.n_points == 4


def test_coefficients_are_never_negative() -> None:
    # Latency that falls with the second feature: least squares would give it a negative slope.
    x = [(1.0, float(b)) for b in range(1, 9)]
    y = [1.0 - 0.05 * b for b in range(1, 9)]
    fit = fit_nonnegative(("a", "b"), x, y)
    assert fit.coefficient("b") == 0.0
    assert fit.coefficient("a") == pytest.approx(np.mean(y))
    assert fit.max_rel_error == pytest.approx(max(abs(np.mean(y) - v) / v for v in y))


def test_fit_states_its_error_on_noisy_points() -> None:
    rng = np.random.default_rng(0)
    x = [(1.0, float(b)) for b in range(1, 50)]
    y = [(0.005 + 1e-4 * b) * (1 + rng.uniform(-0.03, 0.03)) for b in range(1, 50)]
    fit = fit_nonnegative(("a", "b"), x, y)
    # 3% noise plus the fitted line's own miss
    assert 0.01 < fit.max_rel_error <= 0.04 and fit.rms_rel_error < 0.03 and 0.9 < fit.r2 < 1.0


def test_too_few_or_bad_points_say_what_is_missing() -> None:
    with pytest.raises(FitError, match="at least 3 points"):
        fit_nonnegative(("a", "b", "c"), [(1, 2, 3)], [1.0])
    with pytest.raises(FitError, match="at least 3 points to fit a, b, c; got 0"):  # every point skipped
        fit_nonnegative(("a", "b", "c"), [], [])
    with pytest.raises(FitError, match="> 0"):
        fit_nonnegative(("a",), [(1,), (1,)], [1.0, 0.0])


def test_prefill_features_follow_the_chunked_prefill_token_budget() -> None:
    assert prefill_features(2048, 8192) == (1.0, 2048.0, 2048.0**2)
    # 16k tokens under an 8k budget: two steps, the second attends over the first chunk too.
    assert prefill_features(16384, 8192) == (2.0, 16384.0, 8192.0 * 8192 + 8192.0 * 16384)
    assert prefill_features(100, 64) == (2.0, 100.0, 64.0 * 64 + 36.0 * 100)


def test_decode_fit_uses_batch_and_total_context() -> None:
    pts = [DecodePoint(b, float(c), 0.004 + 1e-5 * b + 2e-8 * b * c) for b in (1, 8, 32) for c in (256, 2048)]
    model = fit_decode(pts)
    assert model.step_s(16, 16 * 1000) == pytest.approx(0.004 + 1e-5 * 16 + 2e-8 * 16000, rel=1e-6)


def test_decode_fit_follows_a_step_that_grows_faster_past_large_batches() -> None:
    """As on H200: 8.6 ms at batch 128 but 16 ms at 256. The batch^2 term takes it; a 3-point grid
    cannot fit four terms and keeps three."""

    def step(b: int, c: float) -> float:
        return 0.0048 + 7e-6 * b + 2.7e-8 * b * c + 6e-8 * b * b

    pts = [DecodePoint(b, float(c), step(b, c)) for b in (1, 16, 64, 128, 256) for c in (640, 2176)]
    model = fit_decode(pts)
    assert model.fit.features[-1] == "batch_sq" and model.fit.max_rel_error < 1e-9
    assert model.step_s(200, 200 * 1000.0) == pytest.approx(step(200, 1000.0), rel=1e-9)
    few = fit_decode(pts[:3])
    assert len(few.fit.coefficients) == 3 and few.terms[3] == 0.0


def test_latency_fits_weigh_every_point_by_its_relative_error() -> None:
    """Prefill points from 17 ms to 0.5 s: a plain least-squares fit misses the small ones by >10%."""
    x = [prefill_features(n, 8192) for n in (256, 512, 1024, 2048, 4096, 8192, 16384)]
    y = [0.0175, 0.0228, 0.0363, 0.0611, 0.1147, 0.2311, 0.5272]  # H200, 8B, vLLM 0.23 (client latency)
    plain = fit_nonnegative(PREFILL_FEATURES, x, y)
    relative = fit_nonnegative(PREFILL_FEATURES, x, y, relative=True)
    assert plain.max_rel_error > 0.10 and relative.max_rel_error < 0.06
    assert relative.rms_rel_error < plain.rms_rel_error and relative.r2 > 0.99


def test_power_model_without_measurements_says_why() -> None:
    pm = fit_power([], "NVML unavailable: no NVIDIA driver")
    assert not pm.available and pm.idle_w is None and "NVML" in (pm.reason or "")
    with pytest.raises(ProfileError, match="no power model"):
        pm.decode_w(4)
    partial = fit_power([PowerPoint("idle", 100.0, 5.0)])
    assert not partial.available and "prefill, decode" in (partial.reason or "")


def test_decode_power_grows_with_log_batch_and_never_drops_below_idle() -> None:
    pts = [PowerPoint("idle", 100.0, 5.0), PowerPoint("prefill", 600.0, 5.0)]
    pts += [PowerPoint("decode", 300.0 + 50.0 * math.log(b), 5.0, batch=b) for b in (1, 4, 16)]
    pm = fit_power(pts)
    assert pm.decode_w(8) == pytest.approx(300 + 50 * math.log(8), rel=1e-6)
    low = fit_power([PowerPoint("idle", 400.0, 5.0), *pts[1:]])
    assert low.decode_w(1) == 400.0


def test_profile_round_trips_through_its_file(tmp_path: Path) -> None:
    prof = illustrative_profile(seed=3)
    path = prof.save(tmp_path / "sub" / "profile.json")
    back = load_profile(path)
    assert back == prof
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and doc["provenance"]["source"] == "illustrative"
    assert len(doc["prefill"]["points"]) == len(prof.prefill_points) > 0  # raw points kept
    assert doc["prefill"]["fit"]["r2"] > 0.99
    assert back.frontend.latency_s > 0 and back.kv_transfer.prefill_overhead_s > 0


def test_a_schema_1_profile_reads_with_no_api_server_or_connector_time(tmp_path: Path) -> None:
    doc = illustrative_profile().to_dict()
    doc["schema_version"] = 1
    del (
        doc["frontend"],
        doc["kv_transfer"]["prefill_overhead_s"],
        doc["kv_transfer"]["prefill_overhead_source"],
    )
    (tmp_path / "v1.json").write_text(json.dumps(doc))
    old = load_profile(tmp_path / "v1.json")
    assert old.frontend.zero and old.kv_transfer.prefill_overhead_s == 0.0
    assert "schema 1" in old.frontend.source and "schema 1" in old.kv_transfer.prefill_overhead_source


def test_the_prefill_fit_is_the_clients_latency_less_the_api_server_time() -> None:
    fe = FrontendModel(0.01, 2e-6, "test")
    points = [PrefillPoint(n, fe.delay_s(n) + 0.003 + 3e-5 * n) for n in (256, 1024, 2048, 4096)]
    model = fit_prefill(points, 8192, fe)
    assert model.fit.coefficients == pytest.approx((0.003, 3e-5, 0.0), abs=1e-9)
    plain = fit_prefill(points, 8192)  # without the split the intercept carries the API server
    assert plain.fit.coefficients[0] == pytest.approx(0.013, rel=1e-3)


def test_kv_points_also_subtract_the_decode_instances_api_server_time() -> None:
    prof = illustrative_profile()
    fe = FrontendModel(0.01, 0.0, "test")
    pts = kv_points_from_stages([2048], [0.030], prof.decode, mean_batch=4.2, frontend=fe)
    assert pts[0].transfer_s == pytest.approx(0.030 - 0.01 - 1.5 * prof.decode.step_s(4, 4 * 2048))
    assert prefill_overhead_s([0.07, 0.08, 0.075], [0.06] * 3) == pytest.approx(0.015)
    assert prefill_overhead_s([0.05], [0.06]) == 0.0  # never negative


def test_unknown_schema_or_kind_is_refused(tmp_path: Path) -> None:
    doc = illustrative_profile().to_dict()
    (tmp_path / "v.json").write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(ProfileError, match="re-run"):
        load_profile(tmp_path / "v.json")
    (tmp_path / "k.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(ProfileError, match="not a planner profile"):
        load_profile(tmp_path / "k.json")
    with pytest.raises(ProfileError, match="planner profile --endpoint"):
        load_profile(tmp_path / "missing.json")


def test_engine_limits_refuse_what_vllm_refuses() -> None:
    with pytest.raises(ProfileError, match="max_num_seqs"):
        EngineLimits(max_num_batched_tokens=128, max_num_seqs=256, kv_capacity_tokens=10_000)


def test_kv_fit_with_one_prompt_length_keeps_the_bandwidth() -> None:
    pts = [KvPoint(2048, s) for s in (0.020, 0.022, 0.030)]
    model = fit_kv_transfer(pts, "test")
    default = default_kv_transfer()
    assert model.bandwidth_bytes_per_s == default.bandwidth_bytes_per_s
    assert model.transfer_s(2048) == pytest.approx(0.022)


def test_kv_fit_with_several_lengths_recovers_latency_and_bandwidth() -> None:
    bpt = 131072.0
    pts = [KvPoint(n, 0.005 + n * bpt / 100e9) for n in (512, 1024, 2048, 4096)]
    model = fit_kv_transfer(pts, "test", bytes_per_token=bpt)
    assert model.latency_s == pytest.approx(0.005) and model.bandwidth_bytes_per_s == pytest.approx(100e9)


def test_kv_points_subtract_the_modeled_decode_step() -> None:
    prof = illustrative_profile()
    step = prof.decode.step_s(4, 4 * 2048)
    pts = kv_points_from_stages([2048], [0.030], prof.decode, mean_batch=4.2)
    assert pts[0].transfer_s == pytest.approx(0.030 - 1.5 * step)


def test_build_profile_from_points_without_power() -> None:
    prov = Provenance(source="test", model="tiny")
    engine = EngineLimits(2048, 128, 100_000)
    pre = [PrefillPoint(n, 0.01 + 1e-5 * n) for n in (128, 512, 1024, 2000)]
    dec = [DecodePoint(b, 300.0, 0.002 + 1e-4 * b) for b in (1, 2, 4, 8)]
    prof = build_profile(prov, engine, pre, dec, default_kv_transfer(), power_reason="CPU run: no NVML")
    assert prof.prefill.request_s(1024, 2048) == pytest.approx(0.01 + 1e-5 * 1024, rel=1e-3)
    assert not prof.power.available and "CPU" in prof.describe()

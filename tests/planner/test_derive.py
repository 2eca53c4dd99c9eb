"""`python -m planner derive`: another model's profile predicted from the measured 8B H200 profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.model_dir import shape_config
from planner.cli import main
from planner.derive import DeriveOptions, derive_profile
from planner.profile_model import Profile, load_profile

ROOT = Path(__file__).resolve().parents[2]
BASE_PATH = ROOT / "results/profiles/h200-8b-nixl.json"
H200_BYTES = 150_754_820_096  # NVML memory.total of the H200s (results/h200x2 power logs: 143,771 MiB)


@pytest.fixture(scope="module")
def base() -> Profile:
    return load_profile(BASE_PATH)


def derived(base: Profile, model: str, **options: float) -> Profile:
    opts = DeriveOptions(**options)  # type: ignore[arg-type]
    return derive_profile(
        base, shape_config("llama-3.1-8b"), shape_config(model), model, str(BASE_PATH), opts
    )


def test_the_base_derived_from_itself_is_the_base(base: Profile) -> None:
    same = derived(base, "llama-3.1-8b")
    for mine, theirs in ((same.prefill.fit, base.prefill.fit), (same.decode.fit, base.decode.fit)):
        assert mine.features == theirs.features
        assert mine.coefficients == pytest.approx(theirs.coefficients, rel=1e-9)
    assert same.engine.kv_capacity_tokens == base.engine.kv_capacity_tokens == 896_912
    assert same.kv_transfer.transfer_s(2048) == pytest.approx(base.kv_transfer.transfer_s(2048))
    assert same.client_prefill_s(4096) == pytest.approx(base.client_prefill_s(4096))
    assert same.power.decode_w(64) == pytest.approx(base.power.decode_w(64))
    assert same.decode.routing is None


def test_it_says_it_is_derived_and_keeps_no_points(base: Profile, tmp_path: Path) -> None:
    prof = derived(base, "qwen2.5-32b")
    assert prof.provenance.source == "derived" and prof.provenance.model == "qwen2.5-32b"
    assert str(BASE_PATH) in prof.provenance.notes
    assert not (prof.prefill_points or prof.decode_points or prof.power_points or prof.kv_points)
    assert prof.frontend.points == () and prof.prefill.fit.n_points == 0
    assert "carried from" in prof.kv_transfer.source and "carried from" in prof.loop.source
    assert "not measured" in prof.describe().splitlines()[0]
    again = load_profile(prof.save(tmp_path / "p.json"))
    assert again.provenance.source == "derived"
    assert again.decode.fit.coefficients == prof.decode.fit.coefficients


def test_prefill_per_token_by_hand_for_the_32b(base: Profile) -> None:
    # GEMM FLOPs per prompt token ~ the layers' matrices: attention hidden x head_dim x 2 x (heads + KV
    # heads) + MLP 3 x hidden x intermediate, per layer (the head computes only the last token).
    llama_8b = 32 * (4096 * 128 * 2 * (32 + 8) + 3 * 4096 * 14336)
    qwen_32b = 64 * (5120 * 128 * 2 * (40 + 8) + 3 * 5120 * 27648)
    want = base.prefill.fit.coefficient("tokens") * qwen_32b / llama_8b
    assert qwen_32b / llama_8b == pytest.approx(4.471, abs=1e-3)
    assert derived(base, "qwen2.5-32b").prefill.fit.coefficient("tokens") == pytest.approx(want, rel=1e-12)


def test_fp8_prefill_per_token_takes_the_speedup(base: Profile) -> None:
    llama_8b = 32 * (4096 * 128 * 2 * (32 + 8) + 3 * 4096 * 14336)
    llama_70b = 80 * (8192 * 128 * 2 * (64 + 8) + 3 * 8192 * 28672)
    b = base.prefill.fit.coefficient("tokens")
    for speedup in (1.6, 2.0):
        got = derived(base, "llama-3.1-70b-fp8", fp8_gemm_speedup=speedup).prefill.fit.coefficient("tokens")
        assert got == pytest.approx(b * llama_70b / speedup / llama_8b, rel=1e-12)


def test_decode_intercept_by_hand_for_the_70b(base: Profile) -> None:
    # Read bytes: every parameter but the input embedding; the 70B's layers in FP8, its head in bf16.
    w = 4.1e12
    read_8b = 2 * (32 * (4096 * 128 * 2 * 40 + 3 * 4096 * 14336) + 128256 * 4096)
    read_70b = 1 * 80 * (8192 * 128 * 2 * 72 + 3 * 8192 * 28672) + 2 * 128256 * 8192
    per_layer = (base.decode.fit.coefficient("step") - read_8b / w) / 32
    want = 80 * per_layer + read_70b / w
    got = derived(base, "llama-3.1-70b-fp8", weight_read_bytes_per_s=w).decode.fit.coefficient("step")
    assert got == pytest.approx(want, rel=1e-12)
    # At W = the 8B's read bytes / its intercept there is no per-layer overhead: a pure bytes ratio.
    w0 = read_8b / base.decode.fit.coefficient("step")
    got0 = derived(base, "llama-3.1-70b-fp8", weight_read_bytes_per_s=w0).decode.fit.coefficient("step")
    assert got0 == pytest.approx(base.decode.fit.coefficient("step") * read_70b / read_8b, rel=1e-9)


def test_kv_pool_matches_the_70b_pool_measured_at_launch(base: Profile) -> None:
    """../shared/gpu-host/README.md: the 70B FP8 shape on one H200 (vLLM 0.23, 0.9 of the GPU) got 187,856
    KV tokens. By hand: the 8B's reserve = 0.9 x HBM - its bf16 weights - its pool; the 70B's pool = the
    rest after its weights (FP8 layers, bf16 embedding and head) / 327,680 B per token."""
    budget = 0.9 * H200_BYTES
    reserve = budget - 2 * 8_029_995_008 - 896_912 * 131_072
    weights_70b = 80 * (8192 * 128 * 2 * 72 + 3 * 8192 * 28672) + 2 * 2 * 128256 * 8192
    want = int((budget - weights_70b - reserve) // (327_680 * 16)) * 16
    prof = derived(base, "llama-3.1-70b-fp8")
    assert prof.engine.kv_capacity_tokens == want
    assert prof.engine.kv_capacity_tokens == pytest.approx(187_856, rel=0.02)
    assert prof.kv_transfer.bytes_per_token == 2 * 80 * 8 * 128 * 2


def test_moe_decode_grows_concavely_with_batch(base: Profile) -> None:
    prof = derived(base, "qwen3-30b-a3b")
    assert prof.decode.routing is not None and prof.decode.routing.experts == 128
    # e by hand: one expert of one layer (3 x 2048 x 768 bf16) over 48 layers, read at 4.1 TB/s.
    assert prof.decode.expert_s == pytest.approx(3 * 2048 * 768 * 2 * 48 / 4.1e12, rel=1e-12)
    step = {b: prof.decode.step_s(b, b * 1152.0) for b in (1, 4, 16, 64)}
    slopes = [(step[hi] - step[lo]) / (hi - lo) for lo, hi in ((1, 4), (4, 16), (16, 64))]
    assert slopes[0] > slopes[1] > slopes[2] > 0
    # Prefill steps read every expert: the intercept holds all of the MoE's ~61 GB, decode only the rest.
    assert prof.prefill.fit.coefficient("steps") > prof.decode.fit.coefficient("step") + 0.01


def test_derive_then_simulate_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, table = tmp_path / "moe.json", tmp_path / "table.md"
    argv = [
        "derive",
        "--from",
        str(BASE_PATH),
        "--model",
        "qwen3-30b-a3b",
        "--out",
        str(out),
        "--table",
        str(table),
    ]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["provenance"]["source"] == "derived" and doc["decode"]["points"] == []
    assert "derive --from" in doc["provenance"]["command"]
    assert "| decode step, batch 256 x 2176 ctx, ms |" in table.read_text()
    sim = [
        "simulate",
        "--profile",
        str(out),
        "--setup",
        "single,1P1D",
        "--rates",
        "2",
        "--num-requests",
        "40",
        "--input-len",
        "1024",
        "--output-len",
        "32",
        "--slo",
        "ttft=2000,tpot=100",
    ]
    assert main(sim) == 0
    printed = capsys.readouterr()
    assert "profile source is 'derived', not measured" in printed.err
    assert "1P1D" in printed.out and "single" in printed.out


@pytest.mark.parametrize("model", ["qwen2.5-32b", "llama-3.1-70b-fp8", "qwen3-30b-a3b"])
def test_the_committed_predictions_load_as_derived(model: str) -> None:
    prof = load_profile(ROOT / f"results/profiles/derived/h200-{model}.json")
    assert prof.provenance.source == "derived" and prof.provenance.model == model
    assert "h200-8b-nixl.json" in prof.provenance.notes and not prof.decode_points
    assert (prof.decode.routing is not None) == (model == "qwen3-30b-a3b")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--model", "llama-9000"], "--model 'llama-9000': not a shape"),
        (["--model", "qwen2.5-32b", "--fp8-gemm-speedup", "0"], "--fp8-gemm-speedup must be > 0"),
        (["--model", "NOCONFIG"], "config.json lacks 'vocab_size'"),
    ],
)
def test_bad_input_is_one_error_line(
    extra: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = {k: v for k, v in shape_config("llama-3.1-8b").items() if k != "vocab_size"}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(partial))
    extra = [str(tmp_path / "m") if e == "NOCONFIG" else e for e in extra]
    assert main(["derive", "--from", str(BASE_PATH), "--out", str(tmp_path / "x.json"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]
    assert not (tmp_path / "x.json").exists()

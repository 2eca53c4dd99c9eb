"""`planner derive --check MEASURED --against DERIVED`: a derived profile judged by a measured one."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from experiments.model_dir import shape_config
from planner.cli import main
from planner.derive import derive_profile
from planner.derive_check import DeriveCheck, check_profiles
from planner.profile_model import DecodePoint, PowerPoint, PrefillPoint, Profile, load_profile

ROOT = Path(__file__).resolve().parents[2]
BASE_PATH = ROOT / "results/profiles/h200-8b-nixl.json"
DERIVED_32B = ROOT / "results/profiles/derived/h200-qwen2.5-32b.json"


@pytest.fixture(scope="module")
def base() -> Profile:
    return load_profile(BASE_PATH)


@pytest.fixture(scope="module")
def self_derived(base: Profile) -> Profile:
    config = shape_config("llama-3.1-8b")
    return derive_profile(base, config, config, "llama-3.1-8b", str(BASE_PATH))


def rows(check: DeriveCheck | dict, group: str) -> dict[str, float]:
    items = check["rows"] if isinstance(check, dict) else [vars(r) for r in check.rows]
    return {r["point"]: r["error"] for r in items if r["group"] == group}


def verdict(check: DeriveCheck, rule: str) -> tuple[float | None, bool | None]:
    v = next(v for v in check.verdicts if v.rule.startswith(rule))
    return v.error, v.holds


def test_the_8b_against_itself_shows_only_the_fits_residuals(tmp_path: Path) -> None:
    derived = tmp_path / "h200-8b-self.json"
    assert main(["derive", "--from", str(BASE_PATH), "--model", "llama-3.1-8b", "--out", str(derived)]) == 0
    out, md = tmp_path / "check.json", tmp_path / "check.md"
    args = ["derive", "--check", str(BASE_PATH), "--against", str(derived), "--json", str(out)]
    assert main([*args, "--markdown", str(md)]) == 0
    got = json.loads(out.read_text())
    # By hand, from the measured file's raw points and fit coefficients.
    raw = json.loads(BASE_PATH.read_text())
    pa, pb, pc = raw["prefill"]["fit"]["coefficients"]
    da, db, dc, dd = raw["decode"]["fit"]["coefficients"]
    fe = raw["frontend"]
    p0, p1 = raw["power"]["decode_fit"]["coefficients"]
    prefill = {p["prompt_tokens"]: p["latency_s"] for p in raw["prefill"]["points"]}
    # 2048 tokens: one step (max_num_batched_tokens 8192), 2048^2 attention pairs, plus the API server.
    want = fe["latency_s"] + fe["per_token_s"] * 2048 + pa + pb * 2048 + pc * 2048**2
    assert rows(got, "prefill")["2048 tokens"] == pytest.approx(want / prefill[2048] - 1, rel=1e-9)
    # 16384 tokens: two 8192-token chunks, pairs 8192 x 8192 + 8192 x 16384.
    want = fe["latency_s"] + fe["per_token_s"] * 16384 + 2 * pa + pb * 16384 + pc * (8192**2 + 8192 * 16384)
    assert rows(got, "prefill")["16384 tokens"] == pytest.approx(want / prefill[16384] - 1, rel=1e-9)
    # Decode at batch 1 over 640 tokens: the first raw decode point; the fit's context term is batch x ctx.
    first = raw["decode"]["points"][0]
    assert (first["batch"], first["context_tokens"]) == (1, 640.0)
    want = da + db + dc * 640 + dd
    assert rows(got, "decode")["batch 1 x 640 ctx"] == pytest.approx(want / first["step_s"] - 1, rel=1e-9)
    big = next(p for p in raw["decode"]["points"] if p["batch"] == 256 and p["context_tokens"] > 2000)
    want = da + db * 256 + dc * 256 * big["context_tokens"] + dd * 256**2
    label = f"batch 256 x {big['context_tokens']:.0f} ctx"
    assert rows(got, "decode")[label] == pytest.approx(want / big["step_s"] - 1, rel=1e-9)
    # Power: the 6th point is decode at batch 4.
    pw = raw["power"]["points"][5]
    assert (pw["state"], pw["batch"]) == ("decode", 4)
    want = p0 + p1 * math.log(4)
    assert rows(got, "power")["decode batch 4 (#6)"] == pytest.approx(want / pw["watts"] - 1, rel=1e-9)
    assert rows(got, "engine") == {"KV pool": 0.0, "KV bytes per token": 0.0}
    # The decode group's worst point is the fit's own stated max relative error.
    dec = next(g for g in got["groups"] if g["group"] == "decode")
    assert dec["points"] == 18
    assert dec["max_abs_error"] == pytest.approx(raw["decode"]["fit"]["max_rel_error"], rel=1e-6)
    # Every rule holds at the fit's own error floor; the MoE rule does not apply.
    holds = {v["rule"]: v["holds"] for v in got["verdicts"]}
    assert holds.pop("experts (decode e, MoE)") is None
    assert all(holds.values()) and len(holds) == 8
    text = md.read_text()
    assert "| intercepts (weights / W + per-layer cost) | holds |" in text
    assert "client_prefill_s" in text and "decode.step_s(batch, batch x context)" in text


def state_w(derived: Profile, p: PowerPoint) -> float:
    pw = derived.power
    w = {"idle": pw.idle_w, "prefill": pw.prefill_w}.get(p.state) or pw.decode_w(p.batch or 1)
    return float(w)


def scaled(derived: Profile, base: Profile, prefill: float, decode: float, watts: float) -> Profile:
    """A 'measured' profile at the 8B's raw points whose values are the derived prediction x a factor."""
    return replace(
        base,
        prefill_points=tuple(
            PrefillPoint(p.prompt_tokens, prefill * derived.client_prefill_s(p.prompt_tokens))
            for p in base.prefill_points
        ),
        decode_points=tuple(
            DecodePoint(p.batch, p.context_tokens, decode * derived.decode.step_s(p.batch, p.context_sum))
            for p in base.decode_points
        ),
        power_points=tuple(
            PowerPoint(p.state, watts * state_w(derived, p), p.seconds, batch=p.batch)
            for p in base.power_points
        ),
        engine=replace(base.engine, kv_capacity_tokens=1_000_000),
    )


def test_known_factors_come_back_as_exactly_those_errors(base: Profile, self_derived: Profile) -> None:
    measured = scaled(self_derived, base, prefill=0.8, decode=1.25, watts=1.1)
    check = check_profiles(measured, self_derived, "scaled", "derived")
    for group, factor in (("prefill", 0.8), ("decode", 1.25), ("power", 1.1)):
        errs = rows(check, group)
        assert len(errs) == {"prefill": 7, "decode": 18, "power": 22}[group]
        assert errs == pytest.approx(dict.fromkeys(errs, 1 / factor - 1), abs=1e-12)
    assert rows(check, "engine")["KV pool"] == pytest.approx(896_912 / 1e6 - 1)
    # The API server's points are the 8B's own (not scaled): its fit residuals, 8.5% at worst.
    assert max(map(abs, rows(check, "api-server").values())) < 0.09
    # +25% on prefill, -20% on decode, -9.1% on power, -10.3% on the pool (2% allowed).
    assert verdict(check, "intercepts") == (pytest.approx(0.25), False)
    assert verdict(check, "decode per sequence") == (pytest.approx(-0.2), False)
    assert verdict(check, "carried: power") == (pytest.approx(1 / 1.1 - 1), True)
    assert verdict(check, "KV capacity") == (pytest.approx(-0.103088), False)
    # Within 15%: decode x 1.1 (-9.1%) holds.
    mild = check_profiles(scaled(self_derived, base, 1.0, 1.1, 1.0), self_derived, "m", "d")
    assert verdict(mild, "decode per context") == (pytest.approx(1 / 1.1 - 1), True)
    assert verdict(mild, "prefill per token") == (pytest.approx(0.0, abs=1e-12), True)


def test_an_moe_is_judged_on_its_experts_term(base: Profile) -> None:
    moe = derive_profile(
        base, shape_config("llama-3.1-8b"), shape_config("qwen3-30b-a3b"), "qwen3-30b-a3b", str(BASE_PATH)
    )
    measured = replace(
        scaled(moe, base, 1.0, 1.0, 1.0), provenance=replace(moe.provenance, source="measured")
    )
    check = check_profiles(measured, moe, "m", "d")
    assert verdict(check, "experts") == (pytest.approx(0.0, abs=1e-12), True)
    text = next(v.text for v in check.verdicts if v.rule.startswith("experts"))
    # The derived rise from batch 1 to 64 at ~640 ctx: 3.26 -> 17.40 ms (derived/README.md's table).
    assert "~640 ctx 14.14 vs 14.14 ms" in text


def test_bad_input_is_one_error_line(
    base: Profile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["--check", str(BASE_PATH), "--against", str(BASE_PATH)], "is not a derived profile"),
        (["--check", str(BASE_PATH), "--against", str(DERIVED_32B)], "measured 'llama-3.1-8b' but"),
        (["--check", str(DERIVED_32B), "--against", str(DERIVED_32B)], "is itself derived"),
        (["--check", str(BASE_PATH)], "--check needs --against"),
        (["--model", "qwen2.5-32b"], "derive needs --from, --out"),
    ]
    no_points = replace(base, prefill_points=(), decode_points=()).save(tmp_path / "bare.json")
    same = tmp_path / "self.json"
    main(["derive", "--from", str(BASE_PATH), "--model", "llama-3.1-8b", "--out", str(same)])
    cases.append((["--check", str(no_points), "--against", str(same)], "keeps no raw points"))
    capsys.readouterr()
    for args, message in cases:
        assert main(["derive", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err

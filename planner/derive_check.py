"""`python -m planner derive --check MEASURED --against DERIVED`: a derived profile (planner/derive.py)
judged point by point by the measured profile of the same model.

Every raw point of the measured profile is set beside what the derived profile predicts for the same
quantity as the profile measured it, with the relative error derived / measured - 1:

- prefill: a prompt alone as the client sees it (median latency, API server included) against the
  derived `Profile.client_prefill_s` (its API-server time, carried from the base, plus its prefill steps);
- api-server: the measured API-server time per prompt size against the derived (carried) one;
- decode: the median token gap of `batch` streams over ~`context_tokens` each against the derived
  `decode.step_s(batch, batch x context_tokens)` (`DecodePoint.context_sum`);
- power: each measured state's watts against the derived idle, prefill or decode(batch) W;
- engine: KV pool tokens, KV bytes per token.

Then per group the median and max |error|, and one verdict per rule of planner/derive.py, on the points
results/profiles/derived/README.md ("What would falsify which rule") names: a rule holds while its error
is within 15% (the KV pool: 2%).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.schema import to_builtins
from planner.profile_model import DecodePoint, PrefillPoint, Profile, load_profile

REJECT_BEYOND = 0.15  # results/profiles/derived/README.md: a miss beyond +-15% rejects the rule
KV_POOL_REJECT_BEYOND = 0.02  # ... and the KV pool within 2% of vLLM's
GROUPS = ("prefill", "api-server", "decode", "power", "engine")
# What each group compares (the output says it once).
COMPARED = {
    "prefill": "median client latency of a prompt alone (API server included) vs derived "
    "client_prefill_s (API-server time + prefill steps)",
    "api-server": "measured API-server time vs the derived (carried) frontend delay",
    "decode": "median token gap vs derived decode.step_s(batch, batch x context)",
    "power": "average W per state vs derived idle / prefill / decode(batch) W",
    "engine": "vLLM's KV pool and KV bytes per token vs derived",
}


@dataclass(frozen=True)
class CheckRow:
    """One measured point beside the derived prediction of the same quantity."""

    group: str
    point: str
    unit: str
    measured: float
    derived: float
    error: float  # derived / measured - 1


@dataclass(frozen=True)
class GroupSummary:
    group: str
    points: int
    median_abs_error: float
    max_abs_error: float
    compared: str


@dataclass(frozen=True)
class Verdict:
    """One derivation rule judged on its points: `holds` None where the points to judge it are missing."""

    rule: str
    text: str
    error: float | None
    threshold: float
    holds: bool | None


@dataclass(frozen=True)
class DeriveCheck:
    measured: str
    derived: str
    model: str
    verdicts: tuple[Verdict, ...]
    groups: tuple[GroupSummary, ...]
    rows: tuple[CheckRow, ...]


def _row(group: str, point: str, unit: str, measured: float, derived: float) -> CheckRow:
    return CheckRow(group, point, unit, measured, derived, derived / measured - 1.0)


def _model_name(model: str) -> str:
    return Path(model.rstrip("/")).name


def _ms(seconds: float) -> float:
    return 1e3 * seconds


def check_rows(measured: Profile, derived: Profile) -> list[CheckRow]:
    rows = [
        _row(
            "prefill",
            f"{p.prompt_tokens} tokens",
            "ms",
            _ms(p.latency_s),
            _ms(derived.client_prefill_s(p.prompt_tokens)),
        )
        for p in measured.prefill_points
    ]
    rows += [
        _row("api-server", f"{n} tokens", "ms", _ms(s), _ms(derived.frontend.delay_s(n)))
        for n, s in measured.frontend.points
    ]
    rows += [
        _row(
            "decode",
            f"batch {p.batch} x {p.context_tokens:.0f} ctx",
            "ms",
            _ms(p.step_s),
            _ms(derived.decode.step_s(p.batch, p.context_sum)),
        )
        for p in measured.decode_points
    ]
    if derived.power.available:
        pw = derived.power
        for i, p in enumerate(measured.power_points):
            if p.state == "idle":
                want = pw.idle_w
            elif p.state == "prefill":
                want = pw.prefill_w
            else:
                want = pw.decode_w(p.batch or 1)
            assert want is not None
            label = f"{p.state}{'' if p.batch is None else f' batch {p.batch}'} (#{i + 1})"
            rows.append(_row("power", label, "W", p.watts, want))
    rows.append(
        _row(
            "engine",
            "KV pool",
            "tokens",
            measured.engine.kv_capacity_tokens,
            derived.engine.kv_capacity_tokens,
        )
    )
    rows.append(
        _row(
            "engine",
            "KV bytes per token",
            "B",
            measured.kv_transfer.bytes_per_token,
            derived.kv_transfer.bytes_per_token,
        )
    )
    return rows


def summarize(rows: Sequence[CheckRow]) -> tuple[GroupSummary, ...]:
    out = []
    for group in GROUPS:
        errs = [abs(r.error) for r in rows if r.group == group]
        if errs:
            out.append(GroupSummary(group, len(errs), statistics.median(errs), max(errs), COMPARED[group]))
    return tuple(out)


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _judged(rule: str, errors: Sequence[float], text: str, threshold: float = REJECT_BEYOND) -> Verdict:
    """A rule judged by the worst error at its points (the README: a miss beyond the threshold at
    those points rejects it)."""
    worst = max(errors, key=abs)
    return Verdict(
        rule,
        f"{text}; {f'worst of its {len(errors)} points' if len(errors) > 1 else 'its point'} {_pct(worst)}",
        worst,
        threshold,
        abs(worst) <= threshold,
    )


def _missing(rule: str, what: str) -> Verdict:
    return Verdict(rule, f"not judged: the measured profile has no {what}", None, REJECT_BEYOND, None)


def _prefill_error(derived: Profile, p: PrefillPoint) -> float:
    return derived.client_prefill_s(p.prompt_tokens) / p.latency_s - 1.0


def _decode_error(derived: Profile, p: DecodePoint) -> float:
    return derived.decode.step_s(p.batch, p.context_sum) / p.step_s - 1.0


def _rise(derived: Profile, lo: DecodePoint, hi: DecodePoint) -> str:
    """The step difference hi - lo, derived vs measured."""
    d = derived.decode.step_s(hi.batch, hi.context_sum) - derived.decode.step_s(lo.batch, lo.context_sum)
    return f"{_ms(d):.2f} vs {_ms(hi.step_s - lo.step_s):.2f} ms"


def context_levels(points: Sequence[DecodePoint]) -> dict[DecodePoint, float]:
    """Each decode point's context level: the profile's contexts are a prompt length plus the mean of
    the tokens decoded so far, so one level's points differ by a few tokens across batches (a point
    whose streams end early reads lower). A level is a run of contexts each within 10% of the run's
    first, named by the run's median context."""
    runs: list[list[DecodePoint]] = []
    for p in sorted(points, key=lambda p: p.context_tokens):
        if not runs or p.context_tokens > 1.1 * runs[-1][0].context_tokens:
            runs.append([])
        runs[-1].append(p)
    return {p: statistics.median(q.context_tokens for q in run) for run in runs for p in run}


def _by_level(points: Sequence[DecodePoint]) -> dict[float, dict[int, DecodePoint]]:
    """The decode points by context level, then by batch."""
    out: dict[float, dict[int, DecodePoint]] = {}
    for p, level in context_levels(points).items():
        out.setdefault(level, {})[p.batch] = p
    return dict(sorted(out.items()))


def _intercepts(measured: Profile, derived: Profile) -> Verdict:
    rule = "intercepts (weights / W + per-layer cost)"
    ones = [p for p in measured.decode_points if p.batch == 1]
    if not ones:
        return _missing(rule, "batch-1 decode points")
    errs = [_decode_error(derived, p) for p in ones]
    text = f"decode batch-1 steps off by {_pct(statistics.median(errs))} (median of {len(errs)})"
    if measured.prefill_points:
        small = min(measured.prefill_points, key=lambda p: p.prompt_tokens)
        errs.append(_prefill_error(derived, small))
        text += f", prefill {small.prompt_tokens} tokens by {_pct(errs[-1])}"
    return _judged(rule, errs, text)


def _experts(measured: Profile, derived: Profile) -> Verdict:
    rule = "experts (decode e, MoE)"
    if derived.decode.routing is None:
        return Verdict(rule, "not applicable: a dense model", None, REJECT_BEYOND, None)
    errs, texts = [], []
    for level, at in _by_level(measured.decode_points).items():
        mid = [b for b in at if 1 < b <= 64]
        errs += [_decode_error(derived, at[b]) for b in mid]
        if 1 in at and mid:
            texts.append(f"~{level:.0f} ctx {_rise(derived, at[1], at[max(mid)])}")
    if not errs:
        return _missing(rule, "decode points at batches 2-64")
    return _judged(rule, errs, f"decode steps at batch 2-64; rise from batch 1 to 64 {'; '.join(texts)}")


def _prefill_line(measured: Profile) -> tuple[PrefillPoint, PrefillPoint] | None:
    """The prefill points whose slope judges the per-token rule: the prompt nearest 2048 tokens and the
    largest one that is still one step (<= max_num_batched_tokens)."""
    one_step = [
        p for p in measured.prefill_points if p.prompt_tokens <= measured.engine.max_num_batched_tokens
    ]
    if len(one_step) < 2:
        return None
    hi = max(one_step, key=lambda p: p.prompt_tokens)
    lo = min((p for p in one_step if p is not hi), key=lambda p: abs(p.prompt_tokens - 2048))
    return lo, hi


def _prefill_slope(measured: Profile, derived: Profile) -> Verdict:
    rule = "prefill per token (b; FP8 GEMM speedup)"
    line = _prefill_line(measured)
    if line is None:
        return _missing(rule, "two one-step prefill points")
    lo, hi = line
    span = hi.prompt_tokens - lo.prompt_tokens
    m = (hi.latency_s - lo.latency_s) / span
    d = (derived.client_prefill_s(hi.prompt_tokens) - derived.client_prefill_s(lo.prompt_tokens)) / span
    text = (
        f"{lo.prompt_tokens}- and {hi.prompt_tokens}-token prompts; slope {1e6 * d:.2f} vs "
        f"{1e6 * m:.2f} us/token"
    )
    if m > 0:
        text += f" (an FP8 checkpoint's implied GEMM speedup: the derivation's x {d / m:.2f})"
    return _judged(rule, [_prefill_error(derived, lo), _prefill_error(derived, hi)], text)


def _attention(measured: Profile, derived: Profile) -> Verdict:
    rule = "attention pairs (prefill c)"
    line = _prefill_line(measured)
    if line is None:
        return _missing(rule, "two one-step prefill points")
    lo, hi = line
    big = max(measured.prefill_points, key=lambda p: p.prompt_tokens)
    if big.prompt_tokens <= hi.prompt_tokens:
        return _missing(rule, "prefill point longer than one step")

    def excess(lat: Callable[[int], float]) -> float:
        """The longest prompt's latency above the line through the two one-step prompts."""
        slope = (lat(hi.prompt_tokens) - lat(lo.prompt_tokens)) / (hi.prompt_tokens - lo.prompt_tokens)
        return lat(big.prompt_tokens) - lat(hi.prompt_tokens) - slope * (big.prompt_tokens - hi.prompt_tokens)

    lat = {p.prompt_tokens: p.latency_s for p in measured.prefill_points}
    m, d = excess(lat.__getitem__), excess(derived.client_prefill_s)
    text = (
        f"the {big.prompt_tokens}-token prompt; its excess over the {lo.prompt_tokens}-{hi.prompt_tokens} "
        f"line {_ms(d):.1f} vs {_ms(m):.1f} ms"
    )
    return _judged(rule, [_prefill_error(derived, big)], text)


def _per_sequence(measured: Profile, derived: Profile) -> Verdict:
    rule = "decode per sequence and batch^2 (b, d)"
    levels = _by_level(measured.decode_points)
    if not levels:
        return _missing(rule, "decode points")
    level, at = next(iter(levels.items()))
    above = sorted(b for b in at if b > 64)
    if not above:
        return _missing(rule, f"decode points above batch 64 at ~{level:.0f} ctx")
    text = f"batch {', '.join(map(str, above))} at ~{level:.0f} ctx"
    if 64 in at:
        text += "; growth from batch 64 " + ", ".join(
            f"to {b} {_rise(derived, at[64], at[b])}" for b in above
        )
    return _judged(rule, [_decode_error(derived, at[b]) for b in above], text)


def _per_context(measured: Profile, derived: Profile) -> Verdict:
    rule = "decode per context token (c: KV bytes per token)"
    levels = _by_level(measured.decode_points)
    batches = {b for at in levels.values() for b in at}
    both = [b for b in batches if sum(b in at for at in levels.values()) >= 2]
    if not both:
        return _missing(rule, "decode points at two contexts of one batch")
    b = 64 if 64 in both else max(both)
    pts = [at[b] for at in levels.values() if b in at]
    lo, hi = pts[0], pts[-1]
    text = (
        f"batch {b} at ~{lo.context_tokens:.0f} and ~{hi.context_tokens:.0f} ctx; the step's growth "
        f"between them {_rise(derived, lo, hi)}"
    )
    return _judged(rule, [_decode_error(derived, lo), _decode_error(derived, hi)], text)


def _kv_pool(rows: Sequence[CheckRow]) -> Verdict:
    pool, bpt = (next(r for r in rows if r.point == name) for name in ("KV pool", "KV bytes per token"))
    text = (
        f"pool {int(pool.derived):,} vs {int(pool.measured):,} tokens; KV bytes per token "
        f"{bpt.derived:,.0f} vs {bpt.measured:,.0f}"
    )
    return _judged("KV capacity", [pool.error], text, KV_POOL_REJECT_BEYOND)


def _carried(rows: Sequence[CheckRow], group: str, what: str) -> Verdict:
    """A carried quantity, judged by its median error (its single points are noisy: power by state)."""
    rule = f"carried: {what}"
    errs = [r.error for r in rows if r.group == group]
    if not errs:
        return _missing(rule, f"{group} points (or the derived profile none)")
    err = statistics.median(errs)
    text = f"median {_pct(err)}, range {_pct(min(errs))} to {_pct(max(errs))} ({len(errs)} points)"
    return Verdict(rule, text, err, REJECT_BEYOND, abs(err) <= REJECT_BEYOND)


def check_profiles(measured: Profile, derived: Profile, measured_name: str, derived_name: str) -> DeriveCheck:
    """The derived profile judged by the measured one; ValueError where they cannot be compared."""
    if derived.provenance.source != "derived":
        raise ValueError(
            f"{derived_name} is not a derived profile (source {derived.provenance.source!r}): give --against "
            "a file written by `python -m planner derive`"
        )
    if measured.provenance.source == "derived":
        raise ValueError(f"{measured_name} is itself derived: give --check a measured profile")
    m, d = _model_name(measured.provenance.model), _model_name(derived.provenance.model)
    if m != d:
        raise ValueError(
            f"{measured_name} measured {m!r} but {derived_name} predicts {d!r}: give the derived profile of "
            "the same model"
        )
    if not (measured.prefill_points or measured.decode_points):
        raise ValueError(
            f"{measured_name} keeps no raw points: give the profile `python -m planner profile` wrote"
        )
    rows = check_rows(measured, derived)
    verdicts = (
        _intercepts(measured, derived),
        _experts(measured, derived),
        _prefill_slope(measured, derived),
        _attention(measured, derived),
        _per_sequence(measured, derived),
        _per_context(measured, derived),
        _kv_pool(rows),
        _carried(rows, "api-server", "API-server time"),
        _carried(rows, "power", "power"),
    )
    return DeriveCheck(measured_name, derived_name, m, verdicts, summarize(rows), tuple(rows))


def _holds(v: Verdict) -> str:
    if v.holds is None:
        return "-"
    return "holds" if v.holds else f"REJECTED (beyond {100 * v.threshold:g}%)"


def check_markdown(check: DeriveCheck) -> str:
    out = [
        f"# {check.model}: derived profile judged by the measured one",
        "",
        f"measured: `{check.measured}`; derived: `{check.derived}`; error = derived / measured - 1.",
        "",
        "| rule | verdict | on its points |",
        "|---|---|---|",
        *(f"| {v.rule} | {_holds(v)} | {v.text} |" for v in check.verdicts),
        "",
        "| group | points | median \\|error\\| | max \\|error\\| | compared |",
        "|---|---|---|---|---|",
        *(
            f"| {g.group} | {g.points} | {100 * g.median_abs_error:.1f}% | {100 * g.max_abs_error:.1f}% | "
            f"{g.compared} |"
            for g in check.groups
        ),
    ]
    for group in GROUPS:
        rows = [r for r in check.rows if r.group == group]
        if not rows:
            continue
        unit = rows[0].unit
        out += [
            "",
            f"## {group}",
            "",
            f"| point | measured, {unit} | derived, {unit} | error |",
            "|---|---|---|---|",
        ]
        digits = 2 if unit == "ms" else 0 if unit != "W" else 1
        out += [
            f"| {r.point} | {r.measured:,.{digits}f} | {r.derived:,.{digits}f} | {_pct(r.error)} |"
            for r in rows
        ]
    return "\n".join(out) + "\n"


def cmd_check(args: argparse.Namespace) -> int:
    if args.against is None:
        raise ValueError("--check needs --against DERIVED.json (the derived profile to judge)")
    check = check_profiles(
        load_profile(args.check), load_profile(args.against), str(args.check), str(args.against)
    )
    text = check_markdown(check)
    print(text, end="")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_builtins(check), indent=2) + "\n")
    return 0

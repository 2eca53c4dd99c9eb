"""Where each GPU's counter energy went: idle, and each request's prefill, decode and KV transfer.

Per GPU over the measured window:
1. idle_j = the idle power measured before the run x the window (drawn with nothing to do: nobody's);
   the rest, counter energy - idle_j, is the dynamic energy to attribute.
2. What each request had in flight on that GPU, per power sample interval (overlap-weighted):
   - co-located instance (role "serving"): prefill from send to first token (its prompt tokens spread
     over that time: `prefill_tok_per_s`), decode from first token to the last chunk (`decode_seqs`, and
     `decode_ctx_ktok`, its context growing from prompt to prompt + output);
   - P/D: the GPU's role decides the phase. Prefill GPU: the proxy's prefill leg (prefill) and the KV
     transfer; decode GPU: the transfer, then decode. The transfer interval is the proxy's decode send to
     first decode chunk (`transfer_seqs`): the connector's KV move plus the decode side's first step, an
     upper bound on the transfer itself.
3. Each interval's joules from NVML's energy counter (`experiments.power_intervals`: cut where the
   counter stepped before each read; between reads far apart, shared by the instant power readings at
   the lag that fits best; no counter column: readings x their sample intervals). On the committed
   2 x H200 runs the counter's intervals explain the P/D prefill GPUs' power with R^2 0.91 median,
   the instant readings 0.19: those lag the work by 75-100 ms.
4. Interval power (joules / width) above idle fitted by non-negative least squares to the in-flight terms
   plus a constant (`PowerFit`: coefficients, R^2). In each interval, its dynamic joules (all intervals
   scaled so they sum to the counter's dynamic energy) go first to the fitted terms, by their modelled
   watts per request (never more than measured). The rest, the busy base the fit's constant and residual
   stand for (an engine stepping draws it whatever the step holds), is split by GPU time: prefills take
   the share of the interval the GPU spends computing them (each prefill's prompt tokens x the run's
   5th-percentile time per prompt token, over its time in flight; at most all), the other phases the
   rest by time in flight; a phase alone takes all.
   Intervals with nothing in flight (`unplaced_j`) are spread over the requests by their shares.
So idle + prefill + decode + transfer = the counter energy of each GPU (to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.fits import FitError, fit_nonnegative
from experiments.power_intervals import READING_LAGS_S, SOURCES, Intervals, power_intervals
from experiments.schema import Distribution, GpuEnergy, Record, RunResult
from experiments.schema.attribution import (
    EnergyAttribution,
    GpuAttribution,
    PhaseTotals,
    PowerFit,
    RequestEnergy,
)
from monitor.csv_io import ARCHIVE_SUFFIX, PowerCsv, power_csv_file, read_power_csv

# Terms of the power fit and the phase each belongs to; units: W per (token/s) = J per prompt token,
# W per sequence, W per 1000 context tokens, W per transfer in flight.
TERMS: dict[str, str] = {
    "prefill_tok_per_s": "prefill",
    "decode_seqs": "decode",
    "decode_ctx_ktok": "decode",
    "transfer_seqs": "transfer",
}
# Per phase, the term that counts a request in flight (the prefill's count is not a fit term: its rate is).
COUNTS: dict[str, str] = {"prefill": "prefill_busy", "decode": "decode_seqs", "transfer": "transfer_seqs"}
# A prefill's compute time: the run's 5th-percentile time per prompt token x its tokens.
FASTEST_PERCENTILE = 5
ROLE_PHASES: dict[str, tuple[str, ...]] = {
    "serving": ("prefill", "decode"),
    "prefill": ("prefill", "transfer"),
    "decode": ("transfer", "decode"),
}
POWER_COLUMNS = ("power_instant", "power")  # instant first: the 1 s average lags the work
METHOD = (
    "per GPU: idle = idle power x window; dynamic = counter - idle, split over intervals whose joules the "
    "energy counter gives (cut at the counter steps its reads saw; between reads far apart, shared by the "
    "instant power readings, lag fitted) by what each request had in flight on that GPU (P/D: the GPU's "
    "role decides the phase, KV transfer = the proxy's decode send to first decode chunk): first by a "
    "non-negative least-squares fit of interval power to the in-flight terms, the rest (busy base) by GPU "
    "time (prefill: prompt tokens x the run's fastest time per token; other phases: time in flight)"
)


class AttributionError(ValueError):
    """The run cannot be attributed (no energy, no power samples); the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Span:
    """One request's phase on one GPU: [start, end) in monotonic ns; `rate` is the prefill's prompt tokens
    per second, `ctx0`/`ctx1` the decode's context at its start and end (tokens)."""

    request: int  # position in the result's records
    phase: str
    start_ns: int
    end_ns: int
    rate: float = 0.0
    ctx0: float = 0.0
    ctx1: float = 0.0
    busy: float = 1.0  # share of the span the GPU computes it (prefill: its fastest time / its time)


@dataclass(slots=True)
class _Split:
    """Joules per (request position, phase) on one GPU, and where its intervals' joules came from."""

    joules: dict[tuple[int, str], float] = field(default_factory=dict)
    source: str = ""


def _last_chunk(r: Record) -> int | None:
    return r.chunk_mono_ns[-1] if r.chunk_mono_ns else r.end_mono_ns


def request_spans(pos: int, r: Record, role: str) -> list[Span]:
    """What request `r` had in flight on a GPU of `role` (empty when its times are missing)."""
    prompt = float(r.prompt_tokens or r.input_tokens_expected or 0)
    out = float(r.completion_tokens if r.completion_tokens is not None else len(r.chunk_mono_ns))
    st = r.stages
    spans: list[Span] = []

    def add(phase: str, a: int | None, b: int | None, **kw: float) -> None:
        if a is not None and b is not None and b > a:
            spans.append(Span(pos, phase, a, b, **kw))

    def prefill(a: int | None, b: int | None) -> None:
        if a is not None and b is not None and b > a:
            add("prefill", a, b, rate=prompt / ((b - a) / 1e9))

    def decode(a: int | None, b: int | None) -> None:
        add("decode", a, b, ctx0=prompt, ctx1=prompt + out)

    has_pd_stages = st is not None and st.t_prefill_start_mono_ns is not None
    if role == "serving":
        first = r.first_token_mono_ns
        prefill(r.sent_mono_ns, first if first is not None else r.end_mono_ns)
        decode(first, _last_chunk(r))
    elif role == "prefill":
        if has_pd_stages and st is not None:
            prefill(st.t_prefill_start_mono_ns, st.t_prefill_end_mono_ns)
            add("transfer", st.t_decode_send_mono_ns, st.t_decode_first_chunk_mono_ns)
        else:
            prefill(r.sent_mono_ns, r.first_token_mono_ns or r.end_mono_ns)
    elif role == "decode":
        if has_pd_stages and st is not None:
            add("transfer", st.t_decode_send_mono_ns, st.t_decode_first_chunk_mono_ns)
            decode(st.t_decode_first_chunk_mono_ns, st.t_decode_end_mono_ns)
        else:
            decode(r.first_token_mono_ns, _last_chunk(r))
    return spans


def with_prefill_busy(spans: list[Span]) -> list[Span]:
    """Prefill spans with `busy` set: the share of its time in flight the GPU spends computing it, its
    prompt tokens x the run's fastest time per prompt token (5th percentile) over its duration. The rest
    of a prefill's time in flight is queueing and the API server, which draw no GPU power of their own."""
    pre = [s for s in spans if s.phase == "prefill" and s.rate > 0]
    if not pre:
        return spans
    per_token = float(np.percentile([1.0 / s.rate for s in pre], FASTEST_PERCENTILE))
    return [
        Span(s.request, s.phase, s.start_ns, s.end_ns, s.rate, s.ctx0, s.ctx1, min(1.0, per_token * s.rate))
        if s.phase == "prefill" and s.rate > 0
        else s
        for s in spans
    ]


@dataclass(frozen=True, slots=True)
class Terms:
    """What was in flight, sparse: one entry per (sample, request span) that overlap; `values[term]` is
    the term's mean over the sample interval (0 for terms of other phases). Dense samples x requests
    matrices would not fit an hour-long trace replay."""

    k: np.ndarray  # sample index of each entry
    i: np.ndarray  # request position of each entry
    values: dict[str, np.ndarray]
    n_samples: int
    n_requests: int

    def per_sample(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.k, weights=values, minlength=self.n_samples)

    def per_request(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.i, weights=values, minlength=self.n_requests)


def in_flight_terms(spans: Sequence[Span], n_requests: int, left: np.ndarray, right: np.ndarray) -> Terms:
    """The fit terms and per-phase counts (`COUNTS`) of every span over the sample intervals it overlaps."""
    width = np.maximum(right - left, 1.0)
    ks, iis, vals = [], [], {t: [] for t in (*TERMS, "prefill_busy")}
    for s in spans:
        k0 = int(np.searchsorted(right, s.start_ns, side="right"))
        k1 = int(np.searchsorted(left, s.end_ns, side="left"))
        if k1 <= k0:
            continue
        kk = np.arange(k0, k1)
        lo = np.maximum(left[kk], s.start_ns)
        hi = np.minimum(right[kk], s.end_ns)
        frac = np.clip(hi - lo, 0.0, None) / width[kk]
        zero = np.zeros(len(kk))
        row = dict.fromkeys(vals, zero)
        if s.phase == "prefill":
            row["prefill_tok_per_s"], row["prefill_busy"] = s.rate * frac, s.busy * frac
        elif s.phase == "transfer":
            row["transfer_seqs"] = frac
        else:
            ctx = s.ctx0 + (s.ctx1 - s.ctx0) * ((lo + hi) / 2.0 - s.start_ns) / (s.end_ns - s.start_ns)
            row["decode_seqs"], row["decode_ctx_ktok"] = frac, frac * ctx / 1000.0
        ks.append(kk)
        iis.append(np.full(len(kk), s.request))
        for t in vals:
            vals[t].append(row[t])

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return Terms(
        k=cat(ks, np.int64),
        i=cat(iis, np.int64),
        values={t: cat(v, float) for t, v in vals.items()},
        n_samples=len(left),
        n_requests=n_requests,
    )


def fit_power(power_w: np.ndarray, idle_w: float, flight: Terms, terms: Sequence[str]) -> PowerFit:
    """Interval power ~ constant + coef . (terms summed over requests), coefficients >= 0. The constant
    absorbs what the idle baseline missed; it is not attributed (only term ratios split a sample)."""
    x = np.column_stack([np.ones(len(power_w))] + [flight.per_sample(flight.values[t]) for t in terms])
    ok = power_w > 0  # an interval the counter saw no energy in (its step came late) says nothing
    x, power_w = x[ok], power_w[ok]
    try:
        fit = fit_nonnegative(("constant", *terms), x, power_w)
    except FitError:
        return PowerFit(samples=len(power_w))
    coef = {t: fit.coefficient(t) for t in terms}
    resid = power_w - x @ np.array(fit.coefficients)
    dyn_mean = float(np.mean(power_w - idle_w))
    rel = float(np.sqrt(np.mean(resid**2)) / dyn_mean) if dyn_mean > 0 else None
    return PowerFit(
        coef_w={"constant_above_idle": fit.coefficient("constant") - idle_w, **coef},
        r2=fit.r2,
        rel_rmse=rel,
        samples=len(power_w),
    )


def _split_base(base_j: np.ndarray, flight: Terms, count: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each sample's busy base by GPU time: prefill takes the share of the sample the GPU spends
    computing prefills (their `busy` sum, at most all of it), the other phases the rest by time in
    flight; a phase alone takes all. Returns joules per request, per phase."""
    n = len(base_j)
    pre = flight.per_sample(count["prefill"]) if "prefill" in count else np.zeros(n)
    others = sum((flight.per_sample(c) for ph, c in count.items() if ph != "prefill"), np.zeros(n))
    pre_share = np.where(others > 0, np.minimum(pre, 1.0), np.where(pre > 0, 1.0, 0.0))
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for ph, c in count.items():
            part = base_j * (pre_share if ph == "prefill" else 1.0 - pre_share)
            denom = pre if ph == "prefill" else others
            per_unit = np.where(denom > 0, part / denom, 0.0)
            out[ph] = flight.per_request(per_unit[flight.k] * c)
    return out


def _r2(fit: PowerFit) -> float:
    return -np.inf if fit.r2 is None else fit.r2


def _fitted(
    gpu: GpuEnergy, power: PowerCsv, column: str, spans: list[Span], n_requests: int
) -> tuple[Intervals, Terms, list[str], PowerFit]:
    """The window's intervals, what was in flight in them and the power fit. Where power readings shape
    the intervals' joules (no counter read on every sample), each lag in READING_LAGS_S is tried and the
    one whose fit explains most of the power is kept (`PowerFit.reading_lag_s`)."""
    best: tuple[Intervals, Terms, list[str], PowerFit] | None = None
    for lag in READING_LAGS_S:
        try:
            iv = power_intervals(gpu, power, column, lag)
        except ValueError as exc:
            raise AttributionError(str(exc)) from exc
        flight = in_flight_terms(spans, n_requests, iv.left, iv.right)
        terms = [x for x in TERMS if TERMS[x] in ROLE_PHASES[gpu.role] and flight.values[x].any()]
        fit = fit_power(iv.joules / iv.width_s, gpu.idle_power_w or 0.0, flight, terms)
        fit.reading_lag_s = None if iv.source == "counter" else lag
        if best is None or _r2(fit) > _r2(best[3]):
            best = (iv, flight, terms, fit)
        if iv.source == "counter":  # the counter's own joules: no reading to align
            break
    assert best is not None
    return best


def split_gpu(
    gpu: GpuEnergy, records: Sequence[Record], power: PowerCsv, column: str, positions: Sequence[int]
) -> tuple[GpuAttribution, _Split]:
    """Attribute one GPU's counter energy over the requests at `positions` (those it served)."""
    if gpu.energy_j is None:
        raise AttributionError(f"GPU {gpu.index} has no counter energy ({gpu.note or 'not measured'})")
    energy = float(gpu.energy_j)
    role = gpu.role
    if role not in ROLE_PHASES or not positions:
        note = "not serving: all its energy is idle" if role not in ROLE_PHASES else "served no request"
        return GpuAttribution(index=gpu.index, role=role, energy_j=energy, idle_j=energy, note=note), _Split()
    if gpu.start_monotonic_ns is None or gpu.end_monotonic_ns is None:
        raise AttributionError(f"GPU {gpu.index}'s energy window has no monotonic times")
    idle_w = gpu.idle_power_w
    notes = []
    fitted_idle = idle_w is None
    spans = with_prefill_busy([s for i in positions for s in request_spans(i, records[i], role)])
    iv, flight, terms, fit = _fitted(gpu, power, column, spans, len(records))
    width_s = iv.width_s
    if fitted_idle:  # no idle baseline: the fit's constant stands in for idle power
        idle_w = fit.coef_w.pop("constant_above_idle", 0.0)
        fit.coef_w["constant_above_idle"] = 0.0
        notes.append("no idle baseline: idle power is the power fit's constant")
    assert idle_w is not None
    idle_j = min(energy, idle_w * gpu.duration_s)
    dynamic = energy - idle_j
    coef = {x: fit.coef_w.get(x, 0.0) for x in terms}
    phases = ROLE_PHASES[role]
    zero = np.zeros(len(flight.k))
    # Per entry: the fitted terms' watts (marginal), and the request's count in flight (the busy base).
    marg = {ph: sum((coef[x] * flight.values[x] for x in terms if TERMS[x] == ph), zero) for ph in phases}
    count = {ph: flight.values[COUNTS[ph]] for ph in phases}
    sample_j = np.clip(iv.joules - idle_w * width_s, 0.0, None)
    marg_k = sum(flight.per_sample(m) for m in marg.values()) * width_s
    count_k = sum(flight.per_sample(c) for c in count.values())
    if sample_j.sum() <= 0:  # the samples never rose above idle though the counter did
        sample_j = count_k.copy()
    scale = dynamic / sample_j.sum() if sample_j.sum() > 0 else 0.0
    sample_j, marg_k = sample_j * scale, marg_k * scale
    placed = count_k > 0
    marg_j = np.minimum(marg_k, sample_j)  # what the fitted terms explain, never more than measured
    base_j = np.where(placed, sample_j - marg_j, 0.0)  # the rest: the busy base
    unplaced = float(sample_j[~placed].sum())
    base = _split_base(base_j, flight, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_marg = np.where(marg_k > 0, marg_j / marg_k, 0.0) * scale * width_s
    placed_j = {ph: flight.per_request(w_marg[flight.k] * marg[ph]) + base[ph] for ph in phases}
    # Unplaced joules follow the placed ones; where none were placed, time in flight.
    spread = (
        placed_j
        if sum(j.sum() for j in placed_j.values()) > 0
        else {ph: flight.per_request(c) for ph, c in count.items()}
    )
    grand = float(sum(j.sum() for j in spread.values()))
    in_flight = np.unique(flight.i[sum(count.values(), zero) > 0]).tolist()
    split = _Split(source=iv.source)
    sums = dict.fromkeys(("prefill", "decode", "transfer"), 0.0)
    for ph, joules in placed_j.items():
        joules = joules + (unplaced * spread[ph] / grand if grand > 0 else 0.0)
        for i in in_flight:
            split.joules[(i, ph)] = float(joules[i])
        sums[ph] = float(joules.sum())
    if not in_flight:  # nothing was in flight in the window at all
        idle_j, notes = energy, [*notes, "no request in flight in the window: all its energy is idle"]
        sums, unplaced = dict.fromkeys(sums, 0.0), 0.0
    return (
        GpuAttribution(
            index=gpu.index,
            role=role,
            energy_j=energy,
            idle_j=idle_j,
            prefill_j=sums["prefill"],
            decode_j=sums["decode"],
            transfer_j=sums["transfer"],
            unplaced_j=unplaced,
            fit=fit,
            note="; ".join(notes),
        ),
        split,
    )


def _gpu_positions(result: RunResult, gpu: GpuEnergy) -> list[int]:
    """The records a GPU served: all of them when one instance has its role, else those the proxy sent
    to the instance on that GPU (by URL)."""
    setup = result.metadata.serving_setup
    role = gpu.role
    same_role = [i for i in (setup.role(role) if setup else []) if i.url]
    if len(same_role) <= 1:
        return list(range(len(result.records)))
    urls = {i.url for i in same_role if (i.gpu or "").strip() == str(gpu.index)}
    if not urls:  # the setup does not say which instance ran on this GPU: it may have served any
        return list(range(len(result.records)))
    out = []
    for pos, r in enumerate(result.records):
        st = r.stages
        url = None if st is None else (st.prefill_url if role == "prefill" else st.decode_url)
        if url in urls:
            out.append(pos)
    return out


def attribute(result: RunResult, power_csv: Path | None = None) -> EnergyAttribution:
    """Attribute the run's counter energy; sets each record's `energy` and returns the section (the caller
    stores it in `result.energy.attribution`). Raises AttributionError when it cannot."""
    sec = result.energy
    if sec is None or not sec.available or not sec.gpus:
        raise AttributionError("the run has no measured GPU energy")
    if power_csv is None:
        if result.run_dir is None or not sec.power_csv:
            raise AttributionError("the run names no power CSV")
        power_csv = result.run_dir / sec.power_csv
    power_csv = power_csv_file(power_csv)  # an archived run keeps power.csv.xz
    if not power_csv.exists():
        raise AttributionError(f"no power samples at {power_csv}; the monitor writes them beside result.json")
    power = read_power_csv(power_csv)
    column = next(
        (c for c in POWER_COLUMNS if all(power.gpu(g.index, c) is not None for g in sec.gpus)), None
    )
    if column is None:
        raise AttributionError(f"{power_csv} has no power column for every GPU of the run")
    gpus, splits = [], []
    for g in sec.gpus:
        ga, sp = split_gpu(g, result.records, power, column, _gpu_positions(result, g))
        gpus.append(ga)
        splits.append(sp)
    pd = any(g.role in ("prefill", "decode") for g in sec.gpus)
    for pos, r in enumerate(result.records):
        parts = {
            ph: sum(sp.joules.get((pos, ph), 0.0) for sp in splits)
            for ph in ("prefill", "decode", "transfer")
        }
        touched = any((pos, ph) in sp.joules for sp in splits for ph in parts)
        r.energy = (
            RequestEnergy(
                prefill_j=parts["prefill"],
                decode_j=parts["decode"],
                transfer_j=parts["transfer"] if pd else None,
            )
            if touched
            else None
        )
    sources = sorted({sp.source for sp in splits if sp.source}, key=list(SOURCES).index)
    warnings = []
    if column != "power_instant" and sources != ["counter"]:
        warnings.append(f"power from `{column}` (NVML's 1 s average): it lags the work, blurring the phases")
    source = "; ".join(
        f"{SOURCES[s]} (gpu_<i>_{'energy_mj' if s == 'counter' else column}"
        + (", gpu_<i>_energy_mj" if s == "counter+instant" else "")
        + ")"
        for s in sources
    )
    return _with_distributions(
        EnergyAttribution(
            method=METHOD,
            power_source=f"{power_csv.name.removesuffix(ARCHIVE_SUFFIX)}: {source or 'no GPU served'}",
            gpus=gpus,
            warnings=warnings,
        ),
        result,
        pd,
    )


def _with_distributions(att: EnergyAttribution, result: RunResult, pd: bool) -> EnergyAttribution:
    good = [r for r in result.successes() if r.energy is not None]
    prompt = [r.input_tokens or 0 for r in good]
    decoded = [max((r.output_tokens or 0) - 1, 0) for r in good]
    e = [r.energy for r in good if r.energy is not None]
    att.totals = PhaseTotals(
        requests=len(good),
        prompt_tokens=int(sum(prompt)),
        decode_tokens=int(sum(decoded)),
        prefill_j=float(sum(x.prefill_j for x in e)),
        decode_j=float(sum(x.decode_j for x in e)),
        transfer_j=float(sum(x.transfer_j or 0.0 for x in e)) if pd else None,
    )
    att.prefill_j = Distribution.of([x.prefill_j for x in e])
    att.decode_j = Distribution.of([x.decode_j for x in e])
    att.transfer_j = Distribution.of([x.transfer_j or 0.0 for x in e]) if pd else None
    att.prefill_j_per_prompt_token = Distribution.of(
        [x.prefill_j / n for x, n in zip(e, prompt, strict=True) if n]
    )
    att.decode_j_per_output_token = Distribution.of(
        [x.decode_j / n for x, n in zip(e, decoded, strict=True) if n]
    )
    return att


def attribute_run(result: RunResult, power_csv: Path | None = None) -> str | None:
    """`attribute` stored into the result (`energy.attribution`, each record's `energy`); returns why not
    (a warning for the result) instead of raising. A run without energy is left alone (None)."""
    if result.energy is None or not result.energy.available:
        return None
    try:
        result.energy.attribution = attribute(result, power_csv)
    except (AttributionError, OSError, ValueError) as exc:
        return f"energy not attributed to requests: {exc}"
    return None


def describe(att: EnergyAttribution) -> list[str]:
    """Where the joules came from, one line per GPU and one for the requests: what
    `python -m experiments.attribution` prints."""
    lines = [f"  {att.power_source}"]
    for g in att.gpus:
        r2 = f"{g.fit.r2:.2f}" if g.fit is not None and g.fit.r2 is not None else "n/a"
        lag = g.fit.reading_lag_s if g.fit is not None else None
        lines.append(
            f"  GPU {g.index} {g.role}: {g.energy_j:.0f} J = idle {g.idle_j:.0f} + prefill "
            f"{g.prefill_j:.0f} + decode {g.decode_j:.0f} + transfer {g.transfer_j:.0f} "
            f"(unplaced {g.unplaced_j:.0f}; fit R^2 {r2}"
            + (f", readings {1000 * lag:.0f} ms late" if lag is not None else "")
            + ")"
            + (f"; {g.note}" if g.note else "")
        )
    t = att.totals
    pre, dec = att.prefill_j_per_prompt_token, att.decode_j_per_output_token
    lines.append(
        f"  {t.requests} requests: prefill {_mj(t.prefill_j_per_prompt_token)} mJ/prompt token "
        f"(p50 {_mj(pre.p50)}, p90 {_mj(pre.p90)}), decode {_mj(t.decode_j_per_output_token)} "
        "mJ/output token "
        f"(p50 {_mj(dec.p50)}, p90 {_mj(dec.p90)})"
        + (
            f", KV transfer {att.transfer_j.p50:.2f} J/request p50"
            if att.transfer_j and att.transfer_j.p50
            else ""
        )
    )
    return lines


def _mj(j: float | None) -> str:
    return "n/a" if j is None else f"{1000 * j:.3g}"


def main(argv: list[str] | None = None) -> int:
    """`python -m experiments.attribution RUN_DIR...`: attribute measured runs from their power.csv and
    print the split (the result files are not changed)."""
    import sys

    from testbed.cli_errors import OneLineErrorParser

    p = OneLineErrorParser(prog="python -m experiments.attribution", description=main.__doc__)
    p.add_argument("run_dirs", nargs="+", help="run directories with a result and its power.csv")
    args = p.parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        try:
            att = attribute(RunResult.load(run_dir))
        except (AttributionError, OSError, ValueError) as exc:
            print(f"error: {run_dir}: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"{run_dir} (closure error {att.worst_closure_error:.2g})", *describe(att), sep="\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())

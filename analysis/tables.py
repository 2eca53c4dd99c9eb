"""The comparison's numbers: one table per offered load, each metric across the runs with a ratio to the
baseline and the better run named; the proxy's TTFT split; the load-sweep rows.

Inside a load group the single-instance run (else the first) is the baseline. Lower is better for
latency and energy, higher for throughput and goodput; counts, durations and power are context (no
verdict). Energy that was not measured is NA with its reason, never zero. Per-request energy divides by
the recomputed summary's completed requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.comparability import check_comparable
from analysis.phase_energy import attribution_of, host_of
from analysis.runs import NA, Run, is_sweep, load_runs
from experiments.schema import BASELINE_KIND, EnergyAttribution

LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2el_ms"))
LATENCY_PERCENTILES = ("p50", "p90", "p99")
STAGE_PARTS = (
    ("prefill leg", "prefill_ms"),
    ("KV transfer + decode queue (decode first chunk)", "decode_first_chunk_ms"),
    ("proxy overhead", "proxy_overhead_ms"),
    ("client side (network, event loop)", "client_side_ms"),
)
# Per-request and per-token energy divide by these summary counts.
PER = (("", None), ("per request, ", "completed"), ("per output token, ", "total_output_tokens"))

Value = float | int | NA | None


@dataclass(frozen=True)
class Metric:
    section: str
    label: str
    better: str | None  # "lower", "higher" or None (shown without a verdict)
    get: Callable[[Run], Value | str]
    unit: str = ""


def _dist(key: str, stat: str) -> Callable[[Run], Value]:
    return lambda run: run.summary.distribution(key).stat(stat)


def _count(run: Run, name: str | None) -> int | None:
    return None if name is None else getattr(run.summary, name)


def _per(value: float | None, count: int | None) -> float | None:
    if value is None or not count:
        return None
    return float(value) / float(count)


def _energy_field(scope: str, key: str, per: str | None = None) -> Callable[[Run], Value]:
    def get(run: Run) -> Value:
        if run.energy_na is not None:
            return run.energy_na
        totals = run.totals(scope)  # type: ignore[arg-type]
        value = None if totals is None else getattr(totals, key)
        if value is None and key in ("static_j", "dynamic_j"):
            return NA("no idle baseline")
        return _per(value, _count(run, per)) if per else value

    return get


def _gpu_field(index: int, key: str, per: str | None = None) -> Callable[[Run], Value]:
    def get(run: Run) -> Value:
        if run.energy_na is not None:
            return run.energy_na
        gpu = run.gpu(index)
        if gpu is None:
            return NA(f"GPU {index} not monitored")
        value = getattr(gpu, key)
        if value is None and key in ("static_j", "dynamic_j"):
            return NA("no idle baseline")
        return _per(value, _count(run, per)) if per else value

    return get


def goodput(run: Run) -> Value:
    return run.summary.goodput if run.summary.slo else NA("no SLO; pass --slo")


def _good_share(run: Run) -> Value:
    if not run.summary.slo:
        return NA("no SLO; pass --slo")
    good, done = run.summary.good_requests, run.summary.measured
    return 100.0 * good / done if good is not None and done else None


def run_status(run: Run) -> str:
    text = "complete" if run.complete else f"INCOMPLETE ({run.status})"
    if run.energy_na is None and run.energy is not None and run.energy.complete is False:
        text += ", energy incomplete"
    return text


def _summary_value(key: str) -> Callable[[Run], Value]:
    return lambda run: getattr(run.summary, key)


def _energy_rows(runs: Sequence[Run]) -> list[Metric]:
    if not any(r.energy_na is None for r in runs):  # no energy anywhere: the headline rows say why
        return [
            *(
                Metric("Energy", f"{prefix}all GPUs", "lower", _energy_field("all_gpus", "energy_j", d), "J")
                for prefix, d in PER[1:]
            ),
            Metric("Energy", "average power, all GPUs", None, _energy_field("all_gpus", "avg_power_w"), "W"),
        ]
    rows = []
    for scope, where in (("all_gpus", "all GPUs"), ("serving_gpus", "serving GPUs")):
        for prefix, per in PER:
            name = f"{prefix or 'energy, '}{where}"
            rows.append(Metric("Energy", name, "lower", _energy_field(scope, "energy_j", per), "J"))
            if scope == "all_gpus":
                for part in ("static", "dynamic"):
                    get = _energy_field(scope, f"{part}_j", per)
                    rows.append(Metric("Energy", f"{name}, {part}", "lower", get, "J"))
    rows.append(
        Metric("Energy", "average power, all GPUs", None, _energy_field("all_gpus", "avg_power_w"), "W")
    )
    for i in sorted({g.index for r in runs for g in r.gpus}):
        gpu = f"GPU {i}"
        rows.append(Metric("Per GPU", f"{gpu} role", None, lambda r, i=i: _gpu_role(r, i)))
        for prefix, per in PER:
            rows.append(
                Metric(
                    "Per GPU",
                    f"{gpu} {prefix or 'energy, '}total",
                    "lower",
                    _gpu_field(i, "energy_j", per),
                    "J",
                )
            )
            for part in ("static", "dynamic"):
                get = _gpu_field(i, f"{part}_j", per)
                rows.append(Metric("Per GPU", f"{gpu} {prefix or 'energy, '}{part}", "lower", get, "J"))
        rows += [
            Metric("Per GPU", f"{gpu} average power", None, _gpu_field(i, "avg_power_w"), "W"),
            Metric("Per GPU", f"{gpu} peak power", None, _gpu_field(i, "peak_power_w"), "W"),
        ]
    return rows + phase_rows()


def _phase(get: Callable[[EnergyAttribution], float | None], pd_only: bool = False) -> Callable[[Run], Value]:
    def value(run: Run) -> Value:
        att = attribution_of(run)
        if isinstance(att, NA):
            return att
        if pd_only and att.totals.transfer_j is None:
            return NA("co-located: no KV transfer")
        return get(att)

    return value


def _host(kind: str) -> Callable[[Run], Value]:
    def value(run: Run) -> Value:
        host = host_of(run)
        return host if isinstance(host, NA) else getattr(host, f"{kind}_j")

    return value


def phase_rows() -> list[Metric]:
    """Energy by phase (experiments.attribution): idle, prefill, decode, KV transfer; J per token and
    across requests; the power fit's worst R^2; the host's RAPL energy beside the GPUs'."""
    rows = [
        Metric("Energy by phase", "idle, all GPUs", "lower", _phase(lambda a: a.idle_j), "J"),
        Metric(
            "Energy by phase", "prefill", "lower", _phase(lambda a: sum(g.prefill_j for g in a.gpus)), "J"
        ),
        Metric("Energy by phase", "decode", "lower", _phase(lambda a: sum(g.decode_j for g in a.gpus)), "J"),
        Metric(
            "Energy by phase",
            "KV transfer",
            "lower",
            _phase(lambda a: sum(g.transfer_j for g in a.gpus), True),
            "J",
        ),
        Metric(
            "Energy by phase",
            "prefill per prompt token",
            "lower",
            _phase(lambda a: a.totals.prefill_j_per_prompt_token),
            "J",
        ),
        Metric(
            "Energy by phase",
            "decode per output token",
            "lower",
            _phase(lambda a: a.totals.decode_j_per_output_token),
            "J",
        ),
    ]
    for stat in ("p50", "p90"):
        rows += [
            Metric(
                "Energy by phase",
                f"prefill per prompt token, {stat} of requests",
                "lower",
                _phase(lambda a, s=stat: a.prefill_j_per_prompt_token.stat(s)),
                "J",
            ),
            Metric(
                "Energy by phase",
                f"decode per output token, {stat} of requests",
                "lower",
                _phase(lambda a, s=stat: a.decode_j_per_output_token.stat(s)),
                "J",
            ),
            Metric(
                "Energy by phase",
                f"KV transfer per request, {stat}",
                "lower",
                _phase(lambda a, s=stat: a.transfer_j.stat(s) if a.transfer_j else None, True),
                "J",
            ),
        ]
    fit_r2 = _phase(lambda a: min((g.fit.r2 for g in a.gpus if g.fit and g.fit.r2 is not None), default=None))
    return [
        *rows,
        Metric("Energy by phase", "power fit R^2 (lowest GPU)", None, fit_r2),
        Metric("Host (RAPL)", "CPU packages", "lower", _host("package"), "J"),
        Metric("Host (RAPL)", "DRAM", "lower", _host("dram"), "J"),
    ]


def _gpu_role(run: Run, index: int) -> Value | str:
    gpu = run.gpu(index)
    return gpu.role if gpu is not None and gpu.role else run.energy_na


def metrics_for(runs: Sequence[Run]) -> list[Metric]:
    """The table's rows: run facts, latency percentiles, throughput, goodput, energy (totals, per GPU)."""
    rows = [
        Metric("Run", "status", None, run_status),
        Metric("Run", "offered load", None, lambda r: r.load_text),
        Metric("Run", "requests ok / failed", None, lambda r: f"{r.summary.completed} / {r.summary.failed}"),
        Metric("Run", "duration", None, _summary_value("duration_s"), "s"),
    ]
    for name, key in LATENCIES:
        rows += [Metric("Latency", f"{name} {p}", "lower", _dist(key, p), "ms") for p in LATENCY_PERCENTILES]
    rows += [
        Metric("Throughput", "request throughput", "higher", _summary_value("request_throughput"), "req/s"),
        Metric(
            "Throughput", "output token throughput", "higher", _summary_value("output_throughput"), "tok/s"
        ),
        Metric(
            "Throughput",
            "total token throughput",
            "higher",
            _summary_value("total_token_throughput"),
            "tok/s",
        ),
        Metric("Throughput", "goodput", "higher", goodput, "req/s"),
        Metric("Throughput", "requests meeting the SLO", "higher", _good_share, "%"),
    ]
    return rows + _energy_rows(runs)


@dataclass
class Row:
    """One metric across the runs of a group."""

    section: str
    label: str
    unit: str
    better: str | None
    values: list[Value | str]
    ratios: list[float | None]  # run / baseline, None at the baseline and where undefined
    best: list[int]  # indices of the better run(s); all indices on a tie; empty without a verdict

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def number(self, i: int) -> float | None:
        v = self.values[i]
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass
class Group:
    """The runs at one offered load, compared with the baseline."""

    load_text: str
    runs: list[Run]
    baseline: int
    rows: list[Row]

    def verdict(self, row: Row) -> str:
        if not row.best:
            return ""
        if len(row.best) == len([v for i in range(len(self.runs)) if (v := row.number(i)) is not None]) > 1:
            return "tie"
        return ", ".join(self.runs[i].label for i in row.best)


@dataclass
class Comparison:
    runs: list[Run]
    groups: list[Group]
    slo: dict[str, float] | None
    slo_given: bool
    differences: list[str]
    forced: bool
    sweep: bool
    notes: list[str] = field(default_factory=list)


def _best(values: list[float | None], better: str | None) -> list[int]:
    present = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if better is None or len(present) < 2:
        return []
    pick = min if better == "lower" else max
    target = pick(v for _, v in present)
    return [i for i, v in present if math.isclose(v, target, rel_tol=1e-12, abs_tol=0.0)]


def build_group(runs: list[Run], metrics: list[Metric]) -> Group:
    """Rows of `metrics` for runs at one load; baseline = the single-instance run, else the first."""
    baseline = next((i for i, r in enumerate(runs) if r.setup_kind == BASELINE_KIND), 0)
    rows = []
    for m in metrics:
        values = [m.get(r) for r in runs]
        row = Row(m.section, m.label, m.unit, m.better, values, [], [])
        nums = [row.number(i) for i in range(len(runs))]
        base = nums[baseline]
        # A ratio needs a positive baseline: e.g. the idle GPU's dynamic energy is ~0 or slightly negative.
        row.ratios = [
            n / base if i != baseline and n is not None and base is not None and base > 0 else None
            for i, n in enumerate(nums)
        ]
        row.best = _best(nums, m.better)
        rows.append(row)
    return Group(runs[baseline].load_text, runs, baseline, rows)


def build_comparison(runs: list[Run], slo: dict[str, float] | None = None, force: bool = False) -> Comparison:
    """Check the runs (raises NotComparable unless `force`) and build one table per offered load."""
    diffs = check_comparable(runs, force)
    metrics = metrics_for(runs)
    groups: dict[tuple[str, float | None], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.load[0], math.inf if r.load[1] is None else r.load[1])):
        groups.setdefault(run.load, []).append(run)
    cmp = Comparison(
        runs=runs,
        groups=[build_group(g, metrics) for g in groups.values()],
        slo=slo if slo is not None else next((r.summary.slo for r in runs if r.summary.slo), None),
        slo_given=slo is not None,
        differences=diffs,
        forced=bool(diffs),
        sweep=is_sweep(runs),
    )
    cmp.notes += _notes(cmp)
    return cmp


def compare_results(
    paths: Iterable[str | Path], slo: dict[str, float] | None = None, force: bool = False
) -> Comparison:
    """Load, check and compare results (see `analysis.runs.load_runs` and `build_comparison`)."""
    return build_comparison(load_runs(paths, slo), slo, force)


def _notes(cmp: Comparison) -> list[str]:
    notes = []
    for run in cmp.runs:
        if not run.complete:
            error = run.result.error
            notes.append(
                f"{run.label} is INCOMPLETE (status {run.status}"
                + (f": {error}" if error else "")
                + f"); its numbers cover the {run.summary.measured} requests recorded."
            )
        energy = run.energy
        if run.energy_na is not None:
            full = energy.reason if energy is not None else None
            notes.append(f"{run.label}: no energy: {full or run.energy_na.reason}.")
        elif energy is not None and energy.complete is False:
            notes.append(f"{run.label}: the energy measurement is incomplete (missing power samples).")
    if not cmp.slo_given and len({str(sorted((r.summary.slo or {}).items())) for r in cmp.runs}) > 1:
        notes.append("the runs were measured with different SLOs; pass --slo to compare their goodput.")
    counts = {r.label: len(r.gpus) for r in cmp.runs if r.gpus}
    if len(set(counts.values())) > 1:
        by_run = ", ".join(f"{label}: {n}" for label, n in counts.items())
        notes.append(
            f"the runs monitored different numbers of GPUs ({by_run}): all-GPU energy is not like for like."
        )
    setups = {r.setup_name for r in cmp.runs}
    for group in cmp.groups:
        if len(setups) > 1 and len({r.setup_name for r in group.runs}) == 1:
            labels = ", ".join(r.label for r in group.runs)
            notes.append(f"at {group.load_text} only {labels} ran: no ratio across setups there.")
    return notes


StageRow = tuple[str, float | None, float | None, float | None, float | None]


def stage_rows(run: Run) -> list[StageRow] | None:
    """TTFT split of a disaggregated run: (part, mean, p50, p99, share of the summed means in %)."""
    stages = run.stages
    if stages is None:
        return None
    means = {key: stages.distribution(key).mean for _, key in STAGE_PARTS}
    total = sum(v for v in means.values() if v is not None)
    out = []
    for name, key in STAGE_PARTS:
        d = stages.distribution(key)
        share = 100.0 * d.mean / total if d.mean is not None and total else None
        out.append((name, d.mean, d.p50, d.p99, share))
    return out


PathRow = tuple[str, str, int, float | None, float | None, float | None, float | None, float | None]


def path_rows(runs: Sequence[Run]) -> list[PathRow]:
    """Requests by the path the proxy's policy chose, per run: (run, path, requests, TTFT p50/p99, TPOT
    p50, E2E p50, prompt tokens mean); empty when no run's proxy recorded paths."""
    out: list[PathRow] = []
    for run in runs:
        for path, p in (run.stages.paths if run.stages is not None else {}).items():
            out.append(
                (run.label, path, p.count, p.ttft_ms.p50, p.ttft_ms.p99, p.tpot_ms.p50, p.e2el_ms.p50,
                 p.input_tokens.mean)
            )  # fmt: skip
    return out


@dataclass(frozen=True)
class SweepRow:
    """One run on a load curve: offered and achieved load, key latencies (ms), goodput, J/request."""

    run: str
    setup: str
    setup_kind: str
    offered: str
    achieved_rps: float | None
    ttft_p50: float | None
    ttft_p99: float | None
    tpot_p50: float | None
    e2e_p50: float | None
    goodput: Value
    j_per_request: Value
    complete: bool


def sweep_rows(runs: Sequence[Run]) -> list[SweepRow]:
    """One row per run for load curves."""
    return [
        SweepRow(
            run=run.label,
            setup=run.setup_name,
            setup_kind=run.setup_kind,
            offered=run.load_text,
            achieved_rps=run.summary.request_throughput,
            ttft_p50=run.summary.ttft_ms.p50,
            ttft_p99=run.summary.ttft_ms.p99,
            tpot_p50=run.summary.tpot_ms.p50,
            e2e_p50=run.summary.e2el_ms.p50,
            goodput=goodput(run),
            j_per_request=_energy_field("all_gpus", "energy_j", "completed")(run),
            complete=run.complete,
        )
        for run in runs
    ]

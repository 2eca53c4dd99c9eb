"""Compare result files side by side: loading, comparability checks, the metric table and report.md.

Runs are grouped by offered load (arrival rate, or closed-loop users); inside a group the traditional
run (else the first) is the baseline and every other run gets a ratio run/baseline per metric, with the
better run named (lower is better for latency and energy, higher for throughput and goodput; counts,
durations and power are shown without a verdict). Summaries are always recomputed from the records with
`experiments.metrics.compute_summary`, with the SLOs given (else the run's own), so goodput is never
taken on trust. Energy that was not measured reads "n/a (reason)", never zero.

Python:
    cmp = compare_results(["results/runs/a", "results/runs/b"], slo={"ttft": 1000})
    print(render_markdown(cmp))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.metrics import compute_summary
from experiments.results import RESULT_FILE, Result, load

MODE_ORDER = ("traditional", "disagg", "passthrough")
BASELINE_MODE = "traditional"
LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2el_ms"))
LATENCY_PERCENTILES = ("p50", "p90", "p99")
STAGE_PARTS = (
    ("prefill leg", "prefill_ms"),
    ("KV transfer + decode queue (decode first chunk)", "decode_first_chunk_ms"),
    ("proxy overhead", "proxy_overhead_ms"),
    ("client side (network, event loop)", "client_side_ms"),
)
REPORT_FILE = "report.md"


class CompareError(Exception):
    """Bad input for a comparison; the message is one line saying what to do."""


class NotComparable(CompareError):
    """Runs whose workload, model or hardware differ."""


@dataclass(frozen=True)
class NA:
    """A value that does not exist, and why."""

    reason: str

    def __str__(self) -> str:
        return f"n/a ({self.reason})" if self.reason else "n/a"


Value = float | int | NA | None


# ---------------------------------------------------------------- loading


@dataclass
class Run:
    """One loaded result with its recomputed summary and its place in the comparison."""

    result: Result
    summary: dict[str, Any]
    label: str = ""

    @property
    def path(self) -> Path:
        return self.result.path

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.result.path.parent.name

    @property
    def metadata(self) -> dict[str, Any]:
        return self.result.metadata

    @property
    def config(self) -> dict[str, Any]:
        return self.metadata.get("config") or {}

    @property
    def mode(self) -> str:
        return str(self.metadata.get("mode") or self.config.get("mode") or "unknown")

    @property
    def complete(self) -> bool:
        return self.result.complete

    @property
    def status(self) -> str:
        status = str(self.result.doc.get("status") or ("complete" if self.complete else "incomplete"))
        return "crashed or still running" if status == "running" else status

    @property
    def start_epoch_ns(self) -> int:
        return int(self.metadata.get("start_epoch_ns") or 0)

    @property
    def sweep_id(self) -> str | None:
        sweep = (self.config.get("extra") or {}).get("sweep")
        return str(sweep["id"]) if isinstance(sweep, dict) and sweep.get("id") is not None else None

    @property
    def load(self) -> tuple[str, float | None]:
        """(kind, value): ("rate", req/s; inf = all at once), ("users", closed-loop), ("trace", None)."""
        arrival = self.config.get("arrival") or {}
        kind = arrival.get("kind")
        if not arrival:
            return "unknown", None
        if kind == "closed":
            users = arrival.get("concurrency")
            return "users", float(users) if users is not None else None
        if kind == "trace":
            return "trace", None
        rate = arrival.get("rate")
        if rate is None:
            rate = ((self.config.get("extra") or {}).get("sweep") or {}).get("rate")
        if rate is None or rate == "inf":
            return "rate", math.inf
        return "rate", float(rate)

    @property
    def load_text(self) -> str:
        kind, value = self.load
        if kind == "trace":
            return "trace replay"
        if value is None:
            return f"unknown {kind}"
        return f"{value:g} req/s" if kind == "rate" else f"{value:g} users"

    @property
    def energy(self) -> dict[str, Any] | None:
        return self.result.energy

    @property
    def energy_na(self) -> NA | None:
        """Why there is no energy, or None when the run has an available energy section."""
        energy = self.energy
        if not isinstance(energy, dict):
            return NA("run did not finish, no energy section" if not self.complete else "no energy section")
        if not energy.get("available"):
            return NA(short_reason(energy.get("reason") or "energy not measured"))
        return None

    @property
    def gpus(self) -> list[dict[str, Any]]:
        """Per-GPU energy entries (empty without energy)."""
        if self.energy_na is not None:
            return []
        return [g for g in (self.energy or {}).get("gpus") or [] if isinstance(g, dict)]

    def gpu(self, index: int) -> dict[str, Any] | None:
        return next((g for g in self.gpus if g.get("index") == index), None)

    def totals(self, scope: str = "all_gpus") -> dict[str, Any]:
        if self.energy_na is not None:
            return {}
        return ((self.energy or {}).get("totals") or {}).get(scope) or {}

    def stages(self) -> dict[str, Any] | None:
        """The proxy's stage-timing summary (disaggregated runs), recomputed when the file lacks it."""
        stored = self.result.doc.get("stages")
        if stored:
            return stored
        if not any(r.get("stages") for r in self.result.measured()):
            return None
        from experiments.runner import stage_summary  # only needed for crashed disagg runs

        return stage_summary(self.result.records)


def short_reason(reason: str, limit: int = 48) -> str:
    """The head of a reason, for a table cell (the report's notes keep the whole reason)."""
    first = reason.split(";")[0].split(":")[0].strip()
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def stored_slo(result: Result) -> dict[str, float] | None:
    """The SLOs a run was measured with (its summary, else its config)."""
    slo = (result.summary or {}).get("slo") or (result.metadata.get("config") or {}).get("slo")
    return {str(k): float(v) for k, v in slo.items()} if slo else None


def load_runs(paths: Iterable[str | Path], slo: dict[str, float] | None = None) -> list[Run]:
    """Load results (result.json or run directories), recompute summaries, sort and label them.

    With `slo`, goodput is recomputed for those SLOs; without, for the SLOs each run was measured with.
    Raises CompareError for a missing or unreadable file.
    """
    results = []
    for p in paths:
        try:
            results.append(load(p))
        except (OSError, ValueError) as exc:
            raise CompareError(f"{exc}; pass a result.json or a run directory") from exc
    return runs_from_results(results, slo)


def runs_from_results(results: Iterable[Result], slo: dict[str, float] | None = None) -> list[Run]:
    """Runs from already loaded results (`experiments.results.load`): see `load_runs`."""
    runs = []
    for result in results:
        try:
            summary = compute_summary(result.records, slo if slo is not None else stored_slo(result))
        except ValueError as exc:
            raise CompareError(f"{result.path}: {exc}") from exc
        runs.append(Run(result, summary))
    if not runs:
        raise CompareError("no results given; pass result.json files or run directories")
    runs.sort(key=_run_order)
    _assign_labels(runs)
    return runs


def _run_order(run: Run) -> tuple[Any, ...]:
    mode_rank = MODE_ORDER.index(run.mode) if run.mode in MODE_ORDER else len(MODE_ORDER)
    kind, value = run.load
    return (mode_rank, run.mode, kind, math.inf if value is None else value, run.start_epoch_ns)


def _assign_labels(runs: list[Run]) -> None:
    """mode, plus @load when loads differ, plus #n for repeats: traditional, disagg@4, disagg@4#2."""
    several_loads = len({r.load for r in runs}) > 1
    seen: dict[str, int] = {}
    for run in runs:
        base = run.mode
        if several_loads:
            kind, value = run.load
            base += f"@{kind}" if value is None else f"@{value:g}" + ("u" if kind == "users" else "")
        seen[base] = seen.get(base, 0) + 1
        run.label = base if seen[base] == 1 else f"{base}#{seen[base]}"


def find_results(root: str | Path) -> list[Path]:
    """Every result.json under `root` (recursively)."""
    root = Path(root)
    return sorted(root.rglob(RESULT_FILE)) if root.is_dir() else []


def default_result_paths(root: str | Path = "results") -> list[Path]:
    """The newest traditional and the newest disaggregated result under `root` (by metadata start time).

    When the newest run of a mode belongs to a rate sweep, the whole sweep of that mode is taken.
    Files that are not results are skipped. Raises CompareError when nothing is found.
    """
    loaded: list[Result] = []
    for path in find_results(root):
        try:
            loaded.append(load(path))
        except (FileNotFoundError, ValueError):
            continue
    chosen: list[Path] = []
    for mode in ("traditional", "disagg"):
        of_mode = [r for r in loaded if r.metadata.get("mode") == mode]
        if not of_mode:
            continue
        newest = max(of_mode, key=lambda r: int(r.metadata.get("start_epoch_ns") or 0))
        sweep = _sweep_id(newest)
        chosen += [r.path for r in of_mode if sweep is not None and _sweep_id(r) == sweep] or [newest.path]
    if not chosen:
        raise CompareError(f"no traditional or disagg results under {root}; pass RESULT paths")
    return chosen


def _sweep_id(result: Result) -> str | None:
    sweep = ((result.metadata.get("config") or {}).get("extra") or {}).get("sweep")
    return str(sweep.get("id")) if isinstance(sweep, dict) and sweep.get("id") is not None else None


# ---------------------------------------------------------------- comparability


def _model_name(run: Run) -> str | None:
    model = run.metadata.get("model") or run.config.get("model")
    return Path(str(model).rstrip("/")).name if model else None


def _hardware(run: Run) -> str:
    inv = run.metadata.get("gpu_inventory") or {}
    if inv.get("available") and inv.get("gpus"):
        used = set(run.config.get("gpu_ids") or [])
        gpus = [g for g in inv["gpus"] if not used or g.get("index") in used] or inv["gpus"]
        return "GPU " + ", ".join(sorted({str(g.get("name")) for g in gpus}))
    return f"CPU {run.metadata.get('platform', 'unknown platform')}"


def _dataset(value: Any) -> str | None:
    return Path(str(value)).name if value else None


# Must match among runs at the same load only: a sweep against one server needs fresh prompts per load,
# or later loads would be served from the prefix cache.
PER_LOAD_KEYS = ("workload seed", "arrival seed")


def _signature(run: Run) -> dict[str, Any]:
    """What must match between compared runs (everything but the load, which may vary in a sweep)."""
    w = run.config.get("workload") or {}
    a = run.config.get("arrival") or {}
    return {
        "model": _model_name(run),
        "hardware": _hardware(run),
        "workload kind": w.get("kind"),
        "input length": w.get("input_len"),
        "output length": w.get("output_len"),
        "dataset": _dataset(w.get("dataset")),
        "fixed prompt": w.get("prompt"),
        "number of requests": w.get("num_requests"),
        "workload seed": w.get("seed"),
        "trace time scale": w.get("trace_time_scale") if w.get("kind") == "trace" else None,
        "arrival kind": a.get("kind"),
        "burstiness": a.get("burstiness") if a.get("kind") == "gamma" else None,
        "max concurrency": a.get("max_concurrency"),
        "arrival seed": a.get("seed"),
        "API": run.config.get("api"),
        "ignore_eos": run.config.get("ignore_eos"),
    }


def is_sweep(runs: Sequence[Run]) -> bool:
    """Runs at several loads: a mode with runs at different loads, or runs sharing one sweep id."""
    by_mode: dict[str, set[tuple[str, float | None]]] = {}
    for run in runs:
        by_mode.setdefault(run.mode, set()).add(run.load)
    if any(len(loads) > 1 for loads in by_mode.values()):
        return True
    ids = [r.sweep_id for r in runs]
    return len(runs) > 1 and ids[0] is not None and len(set(ids)) == 1 and len({r.load for r in runs}) > 1


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ":".join(map(str, value))
    return "none" if value is None else str(value)


def differences(runs: Sequence[Run]) -> list[str]:
    """What differs between the runs beyond the load, one phrase per field (empty when comparable)."""
    sigs = [_signature(r) for r in runs]
    out = []
    for key in sigs[0] if sigs else []:
        values = [s[key] for s in sigs]
        if key in PER_LOAD_KEYS:  # runs at one load share prompts; a sweep draws new ones per load
            groups: dict[Any, set[Any]] = {}
            for r, v in zip(runs, values, strict=True):
                groups.setdefault(r.load, set()).add(v)
            if all(len(g) == 1 for g in groups.values()):
                continue
        if any(v != values[0] for v in values):
            by_run = ", ".join(f"{r.label} [{r.name}]: {_show(v)}" for r, v in zip(runs, values, strict=True))
            out.append(f"{key} differs ({by_run})")
    if len({r.load for r in runs}) > 1 and not is_sweep(runs):
        loads = ", ".join(f"{r.label}: {r.load_text}" for r in runs)
        out.append(f"offered load differs outside a sweep ({loads})")
    return out


def check_comparable(runs: Sequence[Run], force: bool = False) -> list[str]:
    """The differences; raises NotComparable naming them unless `force`."""
    diffs = differences(runs)
    if diffs and not force:
        raise NotComparable(f"runs are not comparable: {'; '.join(diffs)}; pass --force to compare anyway")
    return diffs


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    section: str
    label: str
    better: str | None  # "lower", "higher" or None (shown without a verdict)
    get: Callable[[Run], Value | str]
    unit: str = ""


def _dist(key: str, stat: str) -> Callable[[Run], Value]:
    return lambda run: (run.summary.get(key) or {}).get(stat)


def _per(value: Value, count: Value) -> Value:
    if isinstance(value, NA):
        return value
    if value is None or not count:
        return None
    return float(value) / float(count)


def _energy_field(scope: str, key: str, per: str | None = None) -> Callable[[Run], Value]:
    def get(run: Run) -> Value:
        if run.energy_na is not None:
            return run.energy_na
        value = run.totals(scope).get(key)
        if value is None and key in ("static_j", "dynamic_j"):
            return NA("no idle baseline")
        return _per(value, run.summary.get(per)) if per else value

    return get


def _gpu_field(index: int, key: str, per: str | None = None) -> Callable[[Run], Value]:
    def get(run: Run) -> Value:
        if run.energy_na is not None:
            return run.energy_na
        gpu = run.gpu(index)
        if gpu is None:
            return NA(f"GPU {index} not monitored")
        value = gpu.get(key)
        if value is None and key in ("static_j", "dynamic_j"):
            return NA("no idle baseline")
        return _per(value, run.summary.get(per)) if per else value

    return get


def _goodput(run: Run) -> Value:
    return run.summary.get("goodput") if run.summary.get("slo") else NA("no SLO; pass --slo")


def _good_share(run: Run) -> Value:
    if not run.summary.get("slo"):
        return NA("no SLO; pass --slo")
    good, done = run.summary.get("good_requests"), run.summary.get("measured")
    return 100.0 * good / done if good is not None and done else None


def _status(run: Run) -> str:
    text = "complete" if run.complete else f"INCOMPLETE ({run.status})"
    if run.energy_na is None and (run.energy or {}).get("complete") is False:
        text += ", energy incomplete"
    return text


def _summary_value(key: str) -> Callable[[Run], Value]:
    return lambda run: run.summary.get(key)


def metrics_for(runs: Sequence[Run]) -> list[Metric]:
    """The table's rows: run facts, latency percentiles, throughput, goodput, energy (totals, per GPU)."""
    rows = [
        Metric("Run", "status", None, _status),
        Metric("Run", "offered load", None, lambda r: r.load_text),
        Metric(
            "Run", "requests ok / failed", None, lambda r: f"{r.summary['completed']} / {r.summary['failed']}"
        ),
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
        Metric("Throughput", "goodput", "higher", _goodput, "req/s"),
        Metric("Throughput", "requests meeting the SLO", "higher", _good_share, "%"),
    ]
    per = (("", None), ("per request, ", "completed"), ("per output token, ", "total_output_tokens"))
    if not any(r.energy_na is None for r in runs):  # no energy anywhere: the headline rows say why
        return [
            *rows,
            *(
                Metric("Energy", f"{prefix}all GPUs", "lower", _energy_field("all_gpus", "energy_j", d), "J")
                for prefix, d in per[1:]
            ),
            Metric("Energy", "average power, all GPUs", None, _energy_field("all_gpus", "avg_power_w"), "W"),
        ]
    for scope, where in (("all_gpus", "all GPUs"), ("serving_gpus", "serving GPUs")):
        for prefix, denominator in per:
            rows.append(
                Metric(
                    "Energy",
                    f"{prefix or 'energy, '}{where}",
                    "lower",
                    _energy_field(scope, "energy_j", denominator),
                    "J",
                )
            )
            if scope == "all_gpus":
                for part in ("static", "dynamic"):
                    rows.append(
                        Metric(
                            "Energy",
                            f"{prefix or 'energy, '}{where}, {part}",
                            "lower",
                            _energy_field(scope, f"{part}_j", denominator),
                            "J",
                        )
                    )
    rows.append(
        Metric("Energy", "average power, all GPUs", None, _energy_field("all_gpus", "avg_power_w"), "W")
    )
    for i in sorted({int(g["index"]) for r in runs for g in r.gpus if g.get("index") is not None}):
        gpu = f"GPU {i}"
        rows.append(
            Metric("Per GPU", f"{gpu} role", None, lambda r, i=i: (r.gpu(i) or {}).get("role") or r.energy_na)
        )
        for prefix, denominator in per:
            rows.append(
                Metric(
                    "Per GPU",
                    f"{gpu} {prefix or 'energy, '}total",
                    "lower",
                    _gpu_field(i, "energy_j", denominator),
                    "J",
                )
            )
            for part in ("static", "dynamic"):
                rows.append(
                    Metric(
                        "Per GPU",
                        f"{gpu} {prefix or 'energy, '}{part}",
                        "lower",
                        _gpu_field(i, f"{part}_j", denominator),
                        "J",
                    )
                )
        rows += [
            Metric("Per GPU", f"{gpu} average power", None, _gpu_field(i, "avg_power_w"), "W"),
            Metric("Per GPU", f"{gpu} peak power", None, _gpu_field(i, "peak_power_w"), "W"),
        ]
    return rows


# ---------------------------------------------------------------- table


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
    """Rows of `metrics` for runs at one load; baseline = the traditional run, else the first."""
    baseline = next((i for i, r in enumerate(runs) if r.mode == BASELINE_MODE), 0)
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
        slo=slo
        if slo is not None
        else next((r.summary.get("slo") for r in runs if r.summary.get("slo")), None),
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
    """Load, check and compare results (see `load_runs` and `build_comparison`)."""
    return build_comparison(load_runs(paths, slo), slo, force)


def _notes(cmp: Comparison) -> list[str]:
    notes = []
    for run in cmp.runs:
        if not run.complete:
            error = run.result.doc.get("error")
            notes.append(
                f"{run.label} is INCOMPLETE (status {run.status}"
                + (f": {error}" if error else "")
                + f"); its numbers cover the {run.summary['measured']} requests recorded."
            )
        energy = run.energy
        if run.energy_na is not None:
            full = energy.get("reason") if isinstance(energy, dict) else None
            notes.append(f"{run.label}: no energy: {full or run.energy_na.reason}.")
        elif (energy or {}).get("complete") is False:
            notes.append(f"{run.label}: the energy measurement is incomplete (missing power samples).")
    if not cmp.slo_given and len({str(sorted((r.summary.get("slo") or {}).items())) for r in cmp.runs}) > 1:
        notes.append("the runs were measured with different SLOs; pass --slo to compare their goodput.")
    counts = {r.label: len(r.gpus) for r in cmp.runs if r.gpus}
    if len(set(counts.values())) > 1:
        by_run = ", ".join(f"{label}: {n}" for label, n in counts.items())
        notes.append(
            f"the runs monitored different numbers of GPUs ({by_run}): all-GPU energy is not like for like."
        )
    modes = {r.mode for r in cmp.runs}
    for group in cmp.groups:
        if len(modes) > 1 and len({r.mode for r in group.runs}) == 1:
            labels = ", ".join(r.label for r in group.runs)
            notes.append(f"at {group.load_text} only {labels} ran: no ratio across modes there.")
    return notes


def stage_rows(run: Run) -> list[tuple[str, float | None, float | None, float | None, float | None]] | None:
    """TTFT split of a disaggregated run: (part, mean, p50, p99, share of the summed means in %)."""
    stages = run.stages()
    if not stages:
        return None
    means = {key: (stages.get(key) or {}).get("mean") for _, key in STAGE_PARTS}
    total = sum(v for v in means.values() if v is not None)
    out = []
    for name, key in STAGE_PARTS:
        d = stages.get(key) or {}
        mean = d.get("mean")
        share = 100.0 * mean / total if mean is not None and total else None
        out.append((name, mean, d.get("p50"), d.get("p99"), share))
    return out


def sweep_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per run for load curves: offered load, achieved req/s, key latencies, J/request."""
    out = []
    for run in runs:
        s = run.summary
        j = _energy_field("all_gpus", "energy_j", "completed")(run)
        out.append(
            {
                "run": run.label,
                "mode": run.mode,
                "offered": run.load_text,
                "achieved_rps": s.get("request_throughput"),
                "ttft_p50": _dist("ttft_ms", "p50")(run),
                "ttft_p99": _dist("ttft_ms", "p99")(run),
                "tpot_p50": _dist("tpot_ms", "p50")(run),
                "e2e_p50": _dist("e2el_ms", "p50")(run),
                "goodput": _goodput(run),
                "j_per_request": j,
                "complete": run.complete,
            }
        )
    return out


# ---------------------------------------------------------------- formatting


def fmt(value: Value | str) -> str:
    """A cell: numbers to 4 significant digits (no exponent for ordinary sizes), n/a with its reason."""
    if value is None:
        return "n/a"
    if isinstance(value, NA | str):
        return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    if math.isinf(v):
        return "inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.3g}"


def fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.3f}"


def _slo_text(slo: dict[str, float] | None) -> str:
    return ", ".join(f"{k} ≤ {v:g} ms" for k, v in slo.items()) if slo else "none"


def _header_label(run: Run) -> str:
    return run.label if run.complete else f"{run.label} (INCOMPLETE)"


def group_columns(group: Group) -> list[str]:
    """Column titles: metric, one per run, one ratio per non-baseline run, better."""
    base = group.runs[group.baseline].label
    cols = ["metric", *(_header_label(r) for r in group.runs)]
    cols += [f"{r.label}/{base}" for i, r in enumerate(group.runs) if i != group.baseline]
    return [*cols, "better"]


def group_cells(group: Group, row: Row) -> list[str]:
    cells = [row.title, *(fmt(v) for v in row.values)]
    cells += [fmt_ratio(row.ratios[i]) for i in range(len(group.runs)) if i != group.baseline]
    return [*cells, group.verdict(row)]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(map(_md_escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_escape, r)) + " |" for r in rows]
    return lines


def render_markdown(
    cmp: Comparison, plots: Sequence[tuple[str, str]] = (), plot_notes: Sequence[str] = ()
) -> str:
    """report.md: runs, warnings, one table per load, TTFT split, sweep table, plots, notes."""
    out = ["# Disaggregated vs traditional serving: comparison", ""]
    out.append(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %z')} by compare_performance.py.")
    out.append("")
    if cmp.forced:
        out += [
            "> **FORCED comparison (--force)**: these runs are not comparable: "
            + "; ".join(cmp.differences)
            + ".",
            "",
        ]
    for run in cmp.runs:
        if not run.complete:
            out += [f"> **{run.label} is INCOMPLETE** (status {run.status}); see the notes.", ""]
    out += ["## Runs", ""]
    out += _md_table(
        ["run", "mode", "offered load", "model", "hardware", "started", "status", "result"],
        [
            [
                r.label,
                r.mode,
                r.load_text,
                str(_model_name(r)),
                _hardware(r),
                str(r.metadata.get("start_iso", "")),
                _status(r),
                str(r.path),
            ]
            for r in cmp.runs
        ],
    )
    origin = "given with --slo" if cmp.slo_given else "as measured"
    out += [
        "",
        f"Goodput SLOs ({origin}): {_slo_text(cmp.slo)}. Summaries are recomputed from the records. "
        "Ratios are run/baseline; *better*: lower latency and energy, higher throughput and goodput; "
        "rows without a verdict are context. Energy per request divides by completed requests.",
        "",
    ]
    for group in cmp.groups:
        out += [f"## Offered load {group.load_text}", ""]
        out += _md_table(group_columns(group), [_md_row(group, row) for row in group.rows])
        out.append("")
    split = [(r, rows) for r in cmp.runs if (rows := stage_rows(r))]
    if split:
        out += ["## TTFT split from the proxy's stage timings", ""]
        for run, rows in split:
            ttft = (run.summary.get("ttft_ms") or {}).get("mean")
            out += [f"**{run.label}** (TTFT mean {fmt(ttft)} ms)", ""]
            out += _md_table(
                ["part", "mean (ms)", "p50 (ms)", "p99 (ms)", "share of mean (%)"],
                [[name, fmt(m), fmt(p50), fmt(p99), fmt(share)] for name, m, p50, p99, share in rows],
            )
            out.append("")
    if cmp.sweep:
        out += ["## Load sweep", ""]
        out += _md_table(*_sweep_table(cmp.runs))
        out.append("")
    if plots:
        out += ["## Plots", ""]
        for title, file in plots:
            out += [f"### {title}", "", f"![{title}]({file})", ""]
    notes = [*cmp.notes, *plot_notes]
    if notes:
        out += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(out)


def _md_row(group: Group, row: Row) -> list[str]:
    cells = group_cells(group, row)
    for i in row.best:
        if group.verdict(row) != "tie":
            cells[1 + i] = f"**{cells[1 + i]}**"
    return cells


def _sweep_table(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    header = [
        "run",
        "offered",
        "achieved (req/s)",
        "TTFT p50 (ms)",
        "TTFT p99 (ms)",
        "TPOT p50 (ms)",
        "E2E p50 (ms)",
        "goodput (req/s)",
        "J/request",
        "complete",
    ]
    rows = [
        [
            r["run"],
            r["offered"],
            fmt(r["achieved_rps"]),
            fmt(r["ttft_p50"]),
            fmt(r["ttft_p99"]),
            fmt(r["tpot_p50"]),
            fmt(r["e2e_p50"]),
            fmt(r["goodput"]),
            fmt(r["j_per_request"]),
            "yes" if r["complete"] else "NO",
        ]
        for r in sweep_rows(runs)
    ]
    return header, rows


def render_terminal(cmp: Comparison, console: Any = None) -> None:
    """Print the tables with rich (better values in bold green, incomplete runs in red)."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: wide enough for two runs and their ratio
            console = Console(width=160)
    if cmp.forced:
        console.print(f"[bold yellow]FORCED comparison:[/] {'; '.join(cmp.differences)}")
    console.print(f"Goodput SLOs: {_slo_text(cmp.slo)}")
    for group in cmp.groups:
        table = Table(title=f"Offered load {group.load_text}", show_lines=False)
        for j, col in enumerate(group_columns(group)):
            run_col = 1 <= j <= len(group.runs)
            style = "red" if run_col and not group.runs[j - 1].complete else None
            table.add_column(col, justify="left" if j == 0 else "right", header_style=style)
        section = None
        for row in group.rows:
            if row.section != section:
                if section is not None:
                    table.add_section()
                section = row.section
            cells = group_cells(group, row)
            if group.verdict(row) != "tie":
                for i in row.best:
                    cells[1 + i] = f"[bold green]{cells[1 + i]}[/]"
            table.add_row(*cells)
        console.print(table)
    for run in cmp.runs:
        rows = stage_rows(run)
        if rows:
            table = Table(title=f"TTFT split: {run.label}")
            for col in ("part", "mean ms", "p50 ms", "p99 ms", "share %"):
                table.add_column(col, justify="left" if col == "part" else "right")
            for name, m, p50, p99, share in rows:
                table.add_row(name, fmt(m), fmt(p50), fmt(p99), fmt(share))
            console.print(table)
    if cmp.sweep:
        header, rows = _sweep_table(cmp.runs)
        table = Table(title="Load sweep")
        for col in header:
            table.add_column(col, justify="left" if col == "run" else "right")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    for note in cmp.notes:
        console.print(f"[yellow]note:[/] {note}")


def write_report(
    cmp: Comparison,
    out_dir: str | Path,
    plots: Sequence[tuple[str, str]] = (),
    plot_notes: Sequence[str] = (),
) -> Path:
    """Write report.md into `out_dir` (plots are referenced by file name, next to it)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    path.write_text(render_markdown(cmp, plots, plot_notes), encoding="utf-8")
    return path

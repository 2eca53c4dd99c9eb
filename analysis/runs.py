"""Loading runs for a comparison: each result with its recomputed summary, its serving setup, its
offered load and a label; plus finding results on disk.

Summaries and stage splits are always recomputed from the records (`experiments.metrics`), with the SLOs
given (else the run's own), so goodput is never taken on trust. A run is named by its serving setup
(`metadata.serving_setup.label`, e.g. "1P1D p2p_nccl GET"), or by its mode for results that did not
record one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.metrics import compute_summary, stage_summary
from experiments.schema import (
    ARCHIVE_FILE,
    RESULT_FILE,
    SERVING_ROLES,
    EnergySection,
    EnergyTotals,
    GpuEnergy,
    RunConfig,
    RunMetadata,
    RunResult,
    Scope,
    SetupKind,
    StageSummary,
    Summary,
    kind_of_mode,
    kind_rank,
    result_file,
)

# Runs sort by setup kind (experiments.schema.vocabulary: single, xpyd, replicas; the first present is
# the baseline); results without a recorded setup take their mode's kind.
Load = tuple[str, float | None]


class CompareError(Exception):
    """Bad input for a comparison; the message is one line saying what to do."""


@dataclass(frozen=True)
class NA:
    """A value that does not exist, and why."""

    reason: str

    def __str__(self) -> str:
        return f"n/a ({self.reason})" if self.reason else "n/a"


def short_reason(reason: str, limit: int = 48) -> str:
    """The head of a reason, for a table cell (the report's notes keep the whole reason)."""
    first = reason.split(";")[0].split(":")[0].strip()
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


@dataclass
class Run:
    """One loaded result with its recomputed summary and stage split, and its place in the comparison."""

    result: RunResult
    summary: Summary
    stages: StageSummary | None
    label: str = ""

    @property
    def path(self) -> Path:
        return _path(self.result)

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.parent.name

    @property
    def metadata(self) -> RunMetadata:
        return self.result.metadata

    @property
    def config(self) -> RunConfig:
        return self.result.metadata.config

    @property
    def mode(self) -> str:
        return self.metadata.mode

    @property
    def setup_name(self) -> str:
        """The serving setup's label, or the mode for results that did not record a setup."""
        return self.metadata.setup_name

    @property
    def setup_kind(self) -> SetupKind:
        return self.metadata.setup_kind

    def gpu_count(self) -> tuple[int | None, str]:
        """(GPUs the setup serves with, where that number comes from); None when nothing tells.

        The recorded setup's `num_gpus`, else its GPU list; results without a setup: traditional = 1
        serving GPU, passthrough and disagg = the GPUs with a serving, prefill or decode role.
        """
        setup = self.metadata.serving_setup
        if setup is not None and setup.num_gpus:
            return setup.num_gpus, "recorded"
        if setup is not None and setup.gpus:
            return len(setup.gpus), "the setup's GPU list"
        if kind_of_mode(self.mode) == "single":
            return 1, f"mode {self.mode}: 1 serving GPU"
        roles = list(self.config.gpu_roles.values()) or [g.role for g in self.gpus]
        serving = sum(1 for role in roles if role in SERVING_ROLES)
        if serving:
            return serving, f"mode {self.mode}: {serving} GPUs with a serving, prefill or decode role"
        return None, f"mode {self.mode} without a recorded setup or GPU roles"

    @property
    def complete(self) -> bool:
        return self.result.complete

    @property
    def status(self) -> str:
        status = self.result.status
        return "crashed or still running" if status == "running" else status

    @property
    def start_epoch_ns(self) -> int:
        return self.metadata.start_epoch_ns

    @property
    def sweep_id(self) -> str | None:
        return _sweep_id(self.result)

    @property
    def load(self) -> Load:
        """(kind, value): ("rate", req/s; inf = all at once), ("users", closed-loop), ("trace", None)."""
        arrival = self.config.arrival
        if arrival.kind == "closed":
            return "users", None if arrival.concurrency is None else float(arrival.concurrency)
        if arrival.kind == "trace":  # a trace rescaled to a mean rate sweeps like a rate
            rate = self.config.workload.trace_rate or (
                self.result.metadata.trace and self.result.metadata.trace.offered_rate
            )
            return ("rate", float(rate)) if rate else ("trace", None)
        rate = self.config.offered_rate
        return "rate", math.inf if rate is None else rate

    @property
    def load_text(self) -> str:
        kind, value = self.load
        if kind == "trace":
            return "trace replay"
        if value is None:
            return f"unknown {kind}"
        return f"{value:g} req/s" if kind == "rate" else f"{value:g} users"

    @property
    def energy(self) -> EnergySection | None:
        return self.result.energy

    @property
    def energy_na(self) -> NA | None:
        """Why there is no energy, or None when the run has an available energy section."""
        energy = self.energy
        if energy is None:
            return NA("run did not finish, no energy section" if not self.complete else "no energy section")
        if not energy.available:
            return NA(short_reason(energy.reason or "energy not measured"))
        return None

    @property
    def gpus(self) -> list[GpuEnergy]:
        """Per-GPU energy (empty without energy)."""
        return list(self.energy.gpus) if self.energy is not None and self.energy_na is None else []

    def gpu(self, index: int) -> GpuEnergy | None:
        return next((g for g in self.gpus if g.index == index), None)

    def totals(self, scope: Scope = "all_gpus") -> EnergyTotals | None:
        return self.energy.totals(scope) if self.energy is not None and self.energy_na is None else None


def stored_slo(result: RunResult) -> dict[str, float] | None:
    """The SLOs a run was measured with (its summary, else its config)."""
    slo = (result.summary.slo if result.summary is not None else None) or result.metadata.config.slo
    return {str(k): float(v) for k, v in slo.items()} if slo else None


def load_results(paths: Iterable[str | Path]) -> list[RunResult]:
    """RunResult.load each path; CompareError (one line) for a missing or unreadable file."""
    results = []
    for p in paths:
        try:
            results.append(RunResult.load(p))
        except (OSError, ValueError) as exc:
            raise CompareError(f"{exc}; pass a result.json or a run directory") from exc
    return results


def load_runs(paths: Iterable[str | Path], slo: dict[str, float] | None = None) -> list[Run]:
    """Load results (result.json or run directories), recompute summaries, sort and label them.

    With `slo`, goodput is recomputed for those SLOs; without, for the SLOs each run was measured with.
    Raises CompareError for a missing or unreadable file.
    """
    return runs_from_results(load_results(paths), slo)


def runs_from_results(results: Iterable[RunResult], slo: dict[str, float] | None = None) -> list[Run]:
    """Runs from already loaded results: see `load_runs`."""
    runs = []
    for result in results:
        try:
            summary = compute_summary(result.records, slo if slo is not None else stored_slo(result))
        except ValueError as exc:
            raise CompareError(f"{result.path}: {exc}") from exc
        runs.append(Run(result, summary, stage_summary(result.records)))
    if not runs:
        raise CompareError("no results given; pass result.json files or run directories")
    runs.sort(key=_run_order)
    _assign_labels(runs)
    return runs


def _run_order(run: Run) -> tuple[object, ...]:
    rank = kind_rank(run.setup_kind)
    load_kind, value = run.load
    return (rank, run.setup_name, load_kind, math.inf if value is None else value, run.start_epoch_ns)


def _variant_facts(run: Run) -> dict[str, str]:
    """What can tell apart runs of one setup name: vLLM version, KV block size, connector options."""
    setup = run.metadata.serving_setup
    if setup is None:
        return {}
    facts = {"vLLM": ",".join(setup.vllm_versions)} if setup.vllm_versions else {}
    sizes = sorted({i.settings.block_size for i in setup.instances if i.settings.block_size})
    if sizes:
        facts["bs"] = ",".join(map(str, sizes))
    for key, value in (setup.connector_options or {}).items():
        if value is not None:
            facts[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return facts


def _variant_suffixes(runs: list[Run]) -> dict[int, str]:
    """Per run (by id), " bs64" / " vLLM 0.26.0" / " ucx_tls=..." for the facts that differ between runs
    sharing a setup name; nothing where they agree."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.setup_name, []).append(run)
    suffixes: dict[int, str] = {}
    for group in groups.values():
        facts = [_variant_facts(r) for r in group]
        keys = sorted({k for f in facts for k in f}, key=lambda k: (k != "vLLM", k != "bs", k))
        differ = [k for k in keys if len({f.get(k) for f in facts}) > 1]
        for run, f in zip(group, facts, strict=True):
            parts = [_fact(k, f[k]) for k in differ if k in f]
            suffixes[id(run)] = "".join(f" {part}" for part in parts)
    return suffixes


def _fact(key: str, value: str) -> str:
    return {"vLLM": f"vLLM {value}", "bs": f"bs{value}"}.get(key, f"{key}={value}")


def _assign_labels(runs: list[Run]) -> None:
    """Setup name, plus what differs between runs of that name (" bs64", " vLLM 0.26.0"), plus @load
    when loads differ, plus #n for repeats: "1 instance", "1P1D ... GET@4", "1P1D nixl bs64", "disagg@4#2"."""
    several_loads = len({r.load for r in runs}) > 1
    suffixes = _variant_suffixes(runs)
    seen: dict[str, int] = {}
    for run in runs:
        base = run.setup_name + suffixes.get(id(run), "")
        if several_loads:
            kind, value = run.load
            base += f"@{kind}" if value is None else f"@{value:g}" + ("u" if kind == "users" else "")
        seen[base] = seen.get(base, 0) + 1
        run.label = base if seen[base] == 1 else f"{base}#{seen[base]}"


def is_sweep(runs: Sequence[Run]) -> bool:
    """Runs at several loads: a setup with runs at different loads, or runs sharing one sweep id."""
    by_setup: dict[str, set[Load]] = {}
    for run in runs:
        by_setup.setdefault(run.setup_name, set()).add(run.load)
    if any(len(loads) > 1 for loads in by_setup.values()):
        return True
    ids = [r.sweep_id for r in runs]
    return len(runs) > 1 and ids[0] is not None and len(set(ids)) == 1 and len({r.load for r in runs}) > 1


def find_results(root: str | Path) -> list[Path]:
    """Every result under `root` (recursively): result.json, or result.json.xz where a run is archived."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted({result_file(p.parent) for p in [*root.rglob(RESULT_FILE), *root.rglob(ARCHIVE_FILE)]})


def default_result_paths(root: str | Path = "results") -> list[Path]:
    """The newest traditional and the newest disaggregated result under `root` (by metadata start time).

    When the newest run of a mode belongs to a rate sweep, the whole sweep of that mode is taken.
    Files that are not results are skipped. Raises CompareError when nothing is found.
    """
    loaded: list[RunResult] = []
    for path in find_results(root):
        try:
            loaded.append(RunResult.load(path))
        except (FileNotFoundError, ValueError):
            continue
    chosen: list[Path] = []
    for mode in ("traditional", "disagg"):
        of_mode = [r for r in loaded if r.metadata.mode == mode]
        if not of_mode:
            continue
        newest = max(of_mode, key=lambda r: r.metadata.start_epoch_ns)
        sweep = _sweep_id(newest)
        same = [r for r in of_mode if sweep is not None and _sweep_id(r) == sweep]
        chosen += [_path(r) for r in same or [newest]]
    if not chosen:
        raise CompareError(f"no traditional or disagg results under {root}; pass RESULT paths")
    return chosen


def _sweep_id(result: RunResult) -> str | None:
    sweep = result.metadata.config.sweep
    return None if sweep is None else str(sweep.id)


def _path(result: RunResult) -> Path:
    assert result.path is not None, "loaded from a file"
    return result.path

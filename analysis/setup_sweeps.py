"""Which runs form one serving setup's rate sweep: one workload shape, one setup, several offered rates.

A workload shape is the comparability signature without the load and the seeds (each rate draws fresh
prompts). Runs are grouped by their setup's label; a sweep whose runs differ in the setup itself (kind,
connector and its options, instances per role, vLLM versions, engine settings) mixes setups and is
refused, or with `force` the runs that differ from the sweep's most common setup are left out with a
warning. Runs sharing a runner sweep id must share one setup too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.comparability import PER_LOAD_KEYS, signature
from analysis.runs import CompareError, Run
from experiments.schema import to_builtins

# kv_transfer_config keys that change with every launch without changing the setup.
VOLATILE_KV_KEYS = ("kv_port", "kv_ip", "engine_id")


class MixedSetups(CompareError):
    """A sweep whose runs were served by different setups."""


def shape_key(run: Run) -> tuple[tuple[str, str], ...]:
    """The workload shape: the comparability signature minus the seeds (the load is not in it)."""
    return tuple((k, repr(v)) for k, v in signature(run).items() if k not in PER_LOAD_KEYS)


def shape_text(runs: Sequence[Run]) -> str:
    """'2048 -> 256 tokens, random, 200 requests per rate, poisson': the sweep's shape in a line (a sweep
    may run more requests at higher rates: '200-1440 requests per rate')."""
    w, a = runs[0].config.workload, runs[0].config.arrival
    counts = sorted({r.config.workload.num_requests for r in runs})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"

    def length(v: int | tuple[int, int] | list[int]) -> str:
        return f"{v[0]}:{v[1]}" if isinstance(v, tuple | list) else str(v)

    if w.kind == "trace":
        trace = runs[0].result.metadata.trace
        slice_ = f" from row {trace.first_row}" if trace is not None else ""
        return (
            f"trace {Path(w.dataset or '?').name}{slice_} (its lengths; its gaps rescaled to each rate's "
            f"mean), {n} requests per rate, {a.kind} arrivals"
        )
    return (
        f"{length(w.input_len)} -> {length(w.output_len)} tokens, {w.kind} prompts, "
        f"{n} requests per rate, {a.kind} arrivals"
    )


def setup_identity(run: Run) -> dict[str, Any]:
    """What makes a setup (flat, comparable): without launch-specific values (ports, URLs, GPU ids)."""
    setup = run.metadata.serving_setup
    if setup is None:
        roles = sorted(str(v) for v in run.config.gpu_roles.values())
        return {"mode": run.mode, "GPU roles": ":".join(roles) or None}
    out: dict[str, Any] = {
        "kind": setup.kind,
        "label": setup.label,
        "connector": setup.connector,
        "selection": setup.select,
        "instances": setup.num_instances,
        "prefill instances": setup.num_prefill,
        "decode instances": setup.num_decode,
        "GPUs": setup.num_gpus,
        "vLLM versions": ":".join(setup.vllm_versions) or None,
    }
    for key, value in sorted((setup.connector_options or {}).items()):
        out[f"connector option {key}"] = value
    for i, inst in enumerate(setup.instances):
        where = f"instance {i} ({inst.role})"
        out[f"{where} vLLM"] = inst.vllm_version
        for key, value in to_builtins(inst.settings).items():
            out[f"{where} {key}"] = value
        for key, value in sorted((inst.kv_transfer_config or {}).items()):
            if key not in VOLATILE_KV_KEYS:
                out[f"{where} kv {key}"] = repr(value)
    return out


def identity_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'key: A vs B' for every field that differs."""
    return [f"{k}: {a.get(k)} vs {b.get(k)}" for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


@dataclass
class SweepCheck:
    """The runs kept, and those left out (with why) when `force` allowed a mixed sweep."""

    kept: list[Run]
    excluded: list[tuple[Run, str]] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [f"{run.name} left out: {why}" for run, why in self.excluded]


def _odd_ones(runs: Sequence[Run], key: Callable[[Run], dict[str, Any]], what: str) -> list[tuple[Run, str]]:
    """Runs whose `key(run)` differs from the most common one (ties: the earliest run's), with why."""
    counts = Counter(repr(key(r)) for r in runs)
    if len(counts) < 2:
        return []
    earliest = {}
    for r in sorted(runs, key=lambda r: r.start_epoch_ns):
        earliest.setdefault(repr(key(r)), r)
    common = max(counts, key=lambda k: (counts[k], -earliest[k].start_epoch_ns))
    ref = earliest[common]
    odd = []
    for r in runs:
        if repr(key(r)) != common:
            diff = (
                identity_diff(key(ref), key(r)) if isinstance(key(r), dict) else [f"{key(ref)} vs {key(r)}"]
            )
            odd.append((r, f"{what} differs from {ref.name} ({'; '.join(diff)})"))
    return odd


def check_sweep_setups(runs: Sequence[Run], force: bool = False) -> SweepCheck:
    """Refuse sweeps that mix setups: runs of one setup label at several loads, or sharing a sweep id,
    must have one setup identity. Raises MixedSetups naming the differences, unless `force`, which
    leaves the odd runs out."""
    odd: dict[int, tuple[Run, str]] = {}
    by_sweep: dict[str, list[Run]] = {}
    for run in runs:
        if run.sweep_id is not None:
            by_sweep.setdefault(run.sweep_id, []).append(run)
    for sweep_id, members in by_sweep.items():
        for run, why in _odd_ones(members, lambda r: {"setup": r.setup_name}, f"sweep {sweep_id}: the setup"):
            odd[id(run)] = (run, why)
    by_label: dict[str, list[Run]] = {}
    for run in runs:
        if id(run) not in odd:
            by_label.setdefault(run.setup_name, []).append(run)
    for label, members in by_label.items():
        if len({r.load for r in members}) < 2 and len({r.sweep_id for r in members} - {None}) == 0:
            continue  # one load, no sweep id: runs to compare side by side, not a sweep
        for run, why in _odd_ones(members, setup_identity, f"sweep of '{label}': the setup"):
            odd[id(run)] = (run, why)
    if odd and not force:
        reasons = "; ".join(f"{run.name}: {why}" for run, why in odd.values())
        raise MixedSetups(
            f"a sweep mixes serving setups ({reasons}); give each setup's runs their own sweep, "
            "or pass --force to leave the runs that differ out"
        )
    return SweepCheck([r for r in runs if id(r) not in odd], list(odd.values()))


def split_shapes(runs: Sequence[Run]) -> list[list[Run]]:
    """The runs grouped by workload shape, in first-seen order."""
    groups: dict[tuple[tuple[str, str], ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(shape_key(run), []).append(run)
    return list(groups.values())


def one_shape(runs: Sequence[Run]) -> list[Run]:
    """The runs when they share one workload shape; CompareError naming what differs otherwise."""
    shapes = split_shapes(runs)
    if len(shapes) <= 1:
        return list(runs)
    keys = [dict(shape_key(g[0])) for g in shapes]
    differing = [k for k in keys[0] if any(s.get(k) != keys[0].get(k) for s in keys)]
    parts = [
        f"{', '.join(f'{k} {s[k]}' for k in differing)} ({len(g)} runs, e.g. {g[0].path.parent})"
        for s, g in zip(keys, shapes, strict=True)
    ]
    raise CompareError(
        f"the runs hold {len(shapes)} workload shapes: {'; '.join(parts)}; "
        "pass one shape's runs at a time (e.g. results/h200x2/frontier/prefill-heavy)"
    )


def by_setup(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs per setup label, in the runs' order (the comparison's kind order: single, xPyD, replicas)."""
    out: dict[str, list[Run]] = {}
    for run in runs:
        out.setdefault(run.setup_name, []).append(run)
    return out


def holds_setup_sweeps(runs: Sequence[Run], min_setups: int = 2) -> bool:
    """Whether the runs hold sweeps (2+ offered rates) of at least `min_setups` setups."""
    rates = {
        name: {r.load for r in members if r.load[0] == "rate"} for name, members in by_setup(runs).items()
    }
    return sum(len(loads) >= 2 for loads in rates.values()) >= min_setups

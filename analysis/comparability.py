"""Whether runs may be compared: the same model, hardware and workload; only the load may vary (in a
sweep), and, across loads of a sweep, the seeds (each load draws fresh prompts)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.runs import CompareError, Run, is_sweep

# Must match among runs at the same load only: a sweep against one server needs fresh prompts per load,
# or later loads would be served from the prefix cache.
# May differ between the loads of a sweep, never within one load: each load draws new prompts, and a
# shape of long requests runs more of them at higher loads to reach a steady state (disagg/campaigns).
PER_LOAD_KEYS = ("workload seed", "arrival seed", "number of requests")


class NotComparable(CompareError):
    """Runs whose workload, model or hardware differ."""


def model_name(run: Run) -> str | None:
    model = run.metadata.model or run.config.model
    return Path(str(model).rstrip("/")).name if model else None


def serving_stack(run: Run) -> str:
    """vLLM version and KV connector of the run's serving setup, e.g. "vLLM 0.26.0, nixl"."""
    setup = run.metadata.serving_setup
    if setup is None:
        return "n/a (no serving setup recorded)"
    version = f"vLLM {', '.join(setup.vllm_versions)}" if setup.vllm_versions else "vLLM n/a"
    return f"{version}, {setup.connector}" if setup.kind == "xpyd" and setup.connector else version


def hardware(run: Run) -> str:
    """The GPUs a run used (by name), or the CPU platform."""
    inv = run.metadata.gpu_inventory
    if inv.available and inv.gpus:
        used = set(run.config.gpu_ids)
        gpus = [g for g in inv.gpus if not used or g.index in used] or inv.gpus
        return "GPU " + ", ".join(sorted({str(g.name) for g in gpus}))
    return f"CPU {run.metadata.platform or 'unknown platform'}"


def _dataset(value: str | None) -> str | None:
    return Path(value).name if value else None


def signature(run: Run) -> dict[str, Any]:
    """What must match between compared runs (everything but the load, which may vary in a sweep)."""
    w, a = run.config.workload, run.config.arrival
    return {
        "model": model_name(run),
        "hardware": hardware(run),
        "workload kind": w.kind,
        "input length": w.input_len,
        "output length": w.output_len,
        "dataset": _dataset(w.dataset),
        "fixed prompt": w.prompt,
        "number of requests": w.num_requests,
        "workload seed": w.seed,
        "trace time scale": w.trace_time_scale if w.kind == "trace" else None,
        "arrival kind": a.kind,
        "burstiness": a.burstiness if a.kind == "gamma" else None,
        "max concurrency": a.max_concurrency,
        "arrival seed": a.seed,
        "API": run.config.api,
        "ignore_eos": run.config.ignore_eos,
    }


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ":".join(map(str, value))
    return "none" if value is None else str(value)


def differences(runs: Sequence[Run]) -> list[str]:
    """What differs between the runs beyond the load, one phrase per field (empty when comparable)."""
    sigs = [signature(r) for r in runs]
    out = []
    for key in sigs[0] if sigs else []:
        values = [s[key] for s in sigs]
        if key in PER_LOAD_KEYS:
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

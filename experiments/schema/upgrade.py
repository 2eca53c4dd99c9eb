"""Older result documents brought to the current schema, one step per version (parsed JSON in and out).

1.0 -> 2.0 (what changed):
- `schema_version` lives at the top only (not in metadata too);
- `metadata.config.extra.sweep` became `metadata.config.sweep`;
- records lost `send_lateness_ns`: `send_lateness_ms` is derived (and written) now;
- energy stores each GPU's idle power once (per GPU) and the idle baseline's length as `idle_seconds`;
  everything derived from them (static/dynamic split, totals, phases, completeness) is recomputed,
  and the monitor's copies (its windows, idle power and split) are gone; unavailable energy has
  `gpus: []`, not null;
- server metrics became `{url: {"deltas": {...}, "error": null | msg}}`;
- summaries lost their throughputs and goodput (derived from counts and duration).

2.0 -> 2.1 (fields added, all with defaults that hold for 2.0 files):
- records: `cancelled` (in flight when the run was interrupted; 2.0 runs did not record those);
- summaries: `cancelled`, `chunks`, `coalesced_chunks` (0: not counted; `RunResult.load` counts them
  from the records then, as for 2.1 files archived before the counts existed);
- metadata: `tokenizer_source`; config: `defaults`.

2.1 -> 2.2:
- warnings are typed (`RunWarning`: code, message, observed, threshold); an older free-text warning
  becomes one with its code read from the text and no values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from experiments.schema.base import SchemaError, to_builtins
from experiments.schema.run_warning import classify

SCHEMA_VERSION = "2.2"

Doc = dict[str, Any]

_SUMMARY_DERIVED = ("request_throughput", "output_throughput", "total_token_throughput", "goodput")
_ENERGY_GPU_DERIVED = ("gpu", "static_j", "dynamic_j")
_WINDOW_DERIVED = ("complete", "total_energy_j")
_MONITOR_DUPLICATES = ("windows", "idle_power_w", "static_dynamic_split")


def _without(d: Doc, keys: tuple[str, ...]) -> Doc:
    return {k: v for k, v in d.items() if k not in keys}


def _energy_1_0(energy: Doc | None) -> Doc | None:
    if energy is None:
        return None
    if not energy.get("available"):
        return {"available": False, "reason": energy.get("reason")}
    idle = energy.get("idle_baseline") or {}
    window = energy.get("window")
    monitor = energy.get("monitor")
    return {
        "available": True,
        "reason": energy.get("reason"),
        "method": energy.get("method"),
        "window": _without(window, _WINDOW_DERIVED) if isinstance(window, dict) else None,
        "idle_seconds": idle.get("seconds"),
        "gpus": [_without(g, _ENERGY_GPU_DERIVED) for g in energy.get("gpus") or []],
        "monitor": _without(monitor, _MONITOR_DUPLICATES) if isinstance(monitor, dict) else None,
        "timeline": energy.get("timeline"),
        "power_csv": energy.get("power_csv"),
    }


def _server_metrics_1_0(metrics: Doc | None) -> Doc:
    out: Doc = {}
    for url, deltas in (metrics or {}).items():
        if "error" in deltas:
            out[url] = {"deltas": {}, "error": str(deltas["error"])}
        else:
            out[url] = {"deltas": deltas, "error": None}
    return out


def _metadata_1_0(meta: Doc) -> Doc:
    meta = _without(meta, ("schema_version",))
    config = dict(meta.get("config") or {})
    extra = config.pop("extra", None) or {}
    config["sweep"] = extra.get("sweep")
    meta["config"] = config
    return meta


def from_1_0(doc: Doc) -> Doc:
    """A 1.0 document in the 2.0 shape (see the module docstring)."""
    summary = doc.get("summary")
    return {
        "schema_version": "2.0",
        "status": doc.get("status") or ("complete" if doc.get("complete") else "running"),
        "error": doc.get("error"),
        "metadata": _metadata_1_0(doc.get("metadata") or {}),
        "summary": _without(summary, _SUMMARY_DERIVED) if isinstance(summary, dict) else None,
        "stages": doc.get("stages"),
        "energy": _energy_1_0(doc.get("energy")),
        "server_metrics": _server_metrics_1_0(doc.get("server_metrics")),
        "warnings": list(doc.get("warnings") or []),
        "records_file": doc.get("records_file"),
        "records": [_without(r, ("send_lateness_ns",)) for r in doc.get("records") or []],
    }


def from_2_0(doc: Doc) -> Doc:
    """A 2.0 document as 2.1: only new fields, whose defaults fill in on load."""
    return {**doc, "schema_version": "2.1"}


def from_2_1(doc: Doc) -> Doc:
    """A 2.1 document as 2.2: free-text warnings become typed ones."""
    warnings = [to_builtins(classify(w)) if isinstance(w, str) else w for w in doc.get("warnings") or []]
    return {**doc, "schema_version": "2.2", "warnings": warnings}


# version -> the step that takes a document of that version one version up
STEPS: dict[str, Callable[[Doc], Doc]] = {"1.0": from_1_0, "2.0": from_2_0, "2.1": from_2_1}


def upgrade(doc: Doc, where: str) -> Doc:
    """`doc` in the current schema (upgraded step by step); raises SchemaError for an unknown version."""
    version = str(doc.get("schema_version"))
    while version != SCHEMA_VERSION:
        step = STEPS.get(version)
        if step is None:
            known = ", ".join([*STEPS, SCHEMA_VERSION])
            raise SchemaError(
                f"{where} has schema_version {version}; this testbed reads {known} "
                "(a newer testbed wrote it: update this checkout)"
            )
        doc = step(doc)
        version = str(doc["schema_version"])
    return doc

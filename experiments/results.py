"""The one result schema: writer (crash-safe) and loader.

A run directory holds
- ``requests.jsonl``: one JSON line per request, appended (and flushed) as each request completes;
- ``result.json``: metadata, summary, energy and all records. It is written once at the start with
  ``"complete": false`` and rewritten atomically at the end, so an interrupted run still leaves a valid
  file marked incomplete, and `load` then takes the records from ``requests.jsonl``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

SCHEMA_VERSION = "1.0"
RESULT_FILE = "result.json"
RECORDS_FILE = "requests.jsonl"

_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _dump(obj: Any) -> bytes:
    """Compact JSON: records hold long timestamp lists, which indentation would multiply."""
    return orjson.dumps(obj, option=_DUMP_OPTS)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ResultWriter:
    """Writes one run directory; safe to interrupt at any point."""

    def __init__(self, run_dir: str | Path, metadata: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = {"schema_version": SCHEMA_VERSION, **metadata}
        self.result_path = self.run_dir / RESULT_FILE
        self.records_path = self.run_dir / RECORDS_FILE
        self.records: list[dict[str, Any]] = []
        self._fd = os.open(self.records_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.sections: dict[str, Any] = {}
        self._write(complete=False, status="running", summary=None)

    def append(self, record: dict[str, Any]) -> None:
        """Persist one finished request immediately (one write syscall per line)."""
        self.records.append(record)
        os.write(self._fd, _dump(record) + b"\n")

    def add_section(self, name: str, value: Any) -> None:
        """Attach a top-level section (energy, monitor, proxy, server metrics...)."""
        self.sections[name] = value

    def finalize(
        self,
        summary: dict[str, Any] | None,
        status: str = "complete",
        error: str | None = None,
    ) -> Path:
        """Write the final result.json; `status` other than "complete" marks it incomplete."""
        self.metadata["end_epoch_ns"] = time.time_ns()
        self._write(complete=status == "complete", status=status, summary=summary, error=error)
        self.close()
        return self.result_path

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, complete: bool, status: str, summary: dict[str, Any] | None, error: str | None = None):
        doc = {
            "schema_version": SCHEMA_VERSION,
            "complete": complete,
            "status": status,
            "error": error,
            "metadata": self.metadata,
            "summary": summary,
            **self.sections,
            "records_file": RECORDS_FILE,
            "records": self.records if status != "running" else [],
        }
        _atomic_write(self.result_path, _dump(doc))


@dataclass
class Result:
    """A loaded run: what a notebook or the analyzer works with."""

    path: Path
    doc: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.doc.get("metadata", {})

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.doc.get("summary")

    @property
    def complete(self) -> bool:
        return bool(self.doc.get("complete"))

    @property
    def energy(self) -> dict[str, Any] | None:
        return self.doc.get("energy")

    def measured(self) -> list[dict[str, Any]]:
        """Records that count: not warm-up."""
        return [r for r in self.records if not r.get("warmup")]

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-request metric arrays (ms) of the successful measured requests, plus pooled ITL."""
        from experiments.metrics import per_request_metrics

        rows = [per_request_metrics(r) for r in self.measured() if r.get("ok")]
        out: dict[str, np.ndarray] = {}
        for key in ("ttft_ms", "tpot_ms", "e2el_ms", "itl_req_avg_ms"):
            out[key] = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
        out["itl_ms"] = np.array([g for r in rows for g in r["itl_ms"]], dtype=float)
        out["sent_s"] = np.array([r["sent_mono_ns"] for r in self.measured() if r.get("ok")], dtype=float)
        if len(out["sent_s"]):
            out["sent_s"] = (out["sent_s"] - out["sent_s"].min()) / 1e9
        return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    if not path.exists():
        return records
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            break  # a line cut by a crash: everything before it is intact
    return records


def load(path: str | Path) -> Result:
    """Load a result from its ``result.json`` or run directory.

    An incomplete result (interrupted or crashed run) gets its records from ``requests.jsonl``.
    """
    p = Path(path)
    result_path = p / RESULT_FILE if p.is_dir() else p
    if not result_path.exists():
        raise FileNotFoundError(f"no result at {result_path}")
    try:
        doc = orjson.loads(result_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{result_path} is not valid JSON: {exc}") from exc
    if "schema_version" not in doc:
        raise ValueError(f"{result_path} is not a testbed result (no schema_version)")
    records = doc.get("records") or []
    jsonl = result_path.parent / doc.get("records_file", RECORDS_FILE)
    if not doc.get("complete"):
        from_disk = _read_jsonl(jsonl)
        if len(from_disk) > len(records):
            records = from_disk
    return Result(result_path, doc, records)

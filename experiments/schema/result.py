"""A run on disk and in memory: `RunResult` with symmetric `save` / `load`, and the crash-safe writer.

A run directory holds
- ``requests.jsonl``: one JSON line per request (a `Record` with its derived metrics), appended and
  flushed as each request completes, so pandas reads it as is (``pd.read_json(path, lines=True)``);
- ``result.json``: metadata, summary, stage split, energy, server metric deltas, warnings and all
  records. `ResultWriter` writes it at the start with status "running" and rewrites it atomically at the
  end, so an interrupted run still leaves a valid file; `load` then takes the records from
  ``requests.jsonl``.
Older files are upgraded on load (experiments.schema.upgrade). Runs kept in git are archived
(`archive_run`): ``result.json.xz`` alone (the records inside, chunk times packed by chunk_codec),
which `load` reads the same way.
"""

from __future__ import annotations

import lzma
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from experiments.schema.base import SchemaError, computed, convert, dumps, to_builtins
from experiments.schema.chunk_codec import pack_chunk_times, unpack_chunk_times
from experiments.schema.energy import SCOPES, EnergySection
from experiments.schema.records import Record, chunk_counts
from experiments.schema.run import RunMetadata, ServerMetrics
from experiments.schema.run_warning import RunWarning
from experiments.schema.summary import StageSummary, Summary, proxy_retried_count, send_span_s
from experiments.schema.upgrade import SCHEMA_VERSION, upgrade
from testbed.files import atomic_write

RESULT_FILE = "result.json"
RECORDS_FILE = "requests.jsonl"
ARCHIVE_FILE = RESULT_FILE + ".xz"
Status = Literal["running", "complete", "interrupted", "failed"]


@dataclass(slots=True, kw_only=True)
class RunResult:
    """One run: what was driven (metadata), every request, and what was made of them."""

    metadata: RunMetadata
    status: Status = "running"
    error: str | None = None  # what stopped an incomplete run
    summary: Summary | None = None
    stages: StageSummary | None = None  # the proxy's stage split (disaggregated runs)
    energy: EnergySection | None = None
    server_metrics: dict[str, ServerMetrics] = field(default_factory=dict)  # by server URL
    warnings: list[RunWarning] = field(default_factory=list)  # typed: filter on `code`
    records: list[Record] = field(default_factory=list)
    path: Path | None = field(default=None, metadata={"json": False})  # result.json it was loaded from

    @computed
    def schema_version(self) -> str:
        return SCHEMA_VERSION

    @computed
    def complete(self) -> bool:
        return self.status == "complete"

    @computed
    def records_file(self) -> str:
        return RECORDS_FILE

    @property
    def run_dir(self) -> Path | None:
        return None if self.path is None else self.path.parent

    def measured(self) -> list[Record]:
        """Records that count: not warm-up."""
        return [r for r in self.records if r.measured]

    def successes(self) -> list[Record]:
        """The measured requests that succeeded: what `summary.completed` counts."""
        return [r for r in self.records if r.measured and r.succeeded]

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-request metric arrays (ms) of the measured successful requests, the pooled ITL, and the
        send times (s after the first)."""
        good = self.successes()
        out = {
            key: np.array([np.nan if (v := getattr(r, key)) is None else v for r in good], dtype=float)
            for key in ("ttft_ms", "tpot_ms", "e2el_ms", "itl_req_avg_ms")
        }
        out["itl_ms"] = np.array([g for r in good for g in r.itl_ms], dtype=float)
        sent = np.array([r.sent_mono_ns for r in good], dtype=float)
        out["sent_s"] = (sent - sent.min()) / 1e9 if sent.size else sent
        return out

    # -- files --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The result.json document. Energy totals per request and token divide by this summary."""
        doc = to_builtins(self)
        if self.energy is not None and self.energy.available:
            doc["energy"]["totals"] = {scope: self._energy_totals(scope) for scope in SCOPES}
        head = {key: doc.pop(key) for key in ("schema_version", "complete", "status", "error")}
        tail = {key: doc.pop(key) for key in ("records_file", "records")}
        return {**head, **doc, **tail}

    def _energy_totals(self, scope: Any) -> dict[str, Any] | None:
        totals = self.energy.totals(scope) if self.energy is not None else None
        if totals is None:
            return None
        s = self.summary
        return {
            **to_builtins(totals),
            "j_per_request": totals.per(s.completed if s else None),
            "j_per_output_token": totals.per(s.total_output_tokens if s else None),
            "j_per_input_token": totals.per(s.total_input_tokens if s else None),
        }

    def save(self, run_dir: str | Path | None = None) -> Path:
        """Write result.json and requests.jsonl into `run_dir` (default: where it was loaded from)."""
        target = Path(run_dir) if run_dir is not None else self.run_dir
        if target is None:
            raise ValueError("RunResult.save needs a run directory (this result was not loaded from one)")
        target.mkdir(parents=True, exist_ok=True)
        atomic_write(target / RECORDS_FILE, b"".join(record_line(r) for r in self.records))
        self.path = target / RESULT_FILE
        atomic_write(self.path, orjson.dumps(self.to_dict(), option=orjson.OPT_NON_STR_KEYS))
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """Load a result from its result.json or run directory (any schema version this code knows).

        An incomplete result (interrupted or crashed run) gets its records from requests.jsonl.
        Raises FileNotFoundError without a result, SchemaError (a ValueError) for a file that is not one.
        """
        result_path = result_file(path)
        try:
            raw = result_path.read_bytes()
            doc = orjson.loads(lzma.decompress(raw) if result_path.name.endswith(".xz") else raw)
            doc = unpack_chunk_times(doc) if isinstance(doc, dict) else doc
        except (orjson.JSONDecodeError, lzma.LZMAError) as exc:
            raise SchemaError(f"{result_path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or "schema_version" not in doc:
            raise SchemaError(f"{result_path} is not a testbed result (no schema_version)")
        doc = upgrade(doc, str(result_path))
        if doc.get("status") != "complete":
            jsonl = result_path.parent / str(doc.get("records_file") or RECORDS_FILE)
            on_disk = read_records_file(jsonl)
            if len(on_disk) > len(doc.get("records") or []):
                doc["records"] = on_disk
        result = convert(doc, cls, str(result_path))
        result.path = result_path
        _count_chunks(result)
        if result.summary is not None and result.summary.send_span_s is None:  # written before the field
            result.summary.send_span_s = send_span_s(r.sent_mono_ns for r in result.records if r.measured)
        if result.summary is not None and not result.summary.proxy_retried:  # written before the field
            stages = (r.stages for r in result.records if r.measured)
            result.summary.proxy_retried = proxy_retried_count(s.retries if s else None for s in stages)
        return result


def _count_chunks(result: RunResult) -> None:
    """Count the summary's chunks from the records where the file did not: 1.0 and 2.0 files, and runs
    archived as 2.1 before the counts existed (they store 0 for both). A summary whose successful
    requests carry chunk times cannot have 0 chunks, so 0 with chunk times present means "not counted"."""
    s = result.summary
    if s is None or s.chunks:
        return
    chunks, coalesced = chunk_counts(result.successes())
    if chunks:
        s.chunks, s.coalesced_chunks = chunks, coalesced


def result_file(path: str | Path) -> Path:
    """The result file of a run directory (result.json, else its archive), or `path` itself."""
    p = Path(path)
    if p.is_dir():
        for name in (RESULT_FILE, ARCHIVE_FILE):
            if (p / name).exists():
                return p / name
        raise FileNotFoundError(f"no result at {p / RESULT_FILE}")
    if not p.exists():
        raise FileNotFoundError(f"no result at {p}")
    return p


def archive_run(run_dir: str | Path) -> Path:
    """Compress a complete run for keeping in git: result.json.xz alone (chunk times packed, see
    chunk_codec), requests.jsonl dropped; an archive already there is rewritten in the current form.

    The records are inside it, so nothing is lost but sub-microsecond chunk-time digits (every summary is
    checked to read back within 1 us); an incomplete run is refused (its records may exist only in
    requests.jsonl). Returns the archive's path.
    """
    run_dir = Path(run_dir)
    res = RunResult.load(run_dir)
    if not res.complete:
        raise ValueError(f"{run_dir} is not complete: keep it as it is")
    dst = run_dir / ARCHIVE_FILE
    tmp = run_dir / "result.json.new.xz"
    doc = pack_chunk_times(res.to_dict())
    tmp.write_bytes(
        lzma.compress(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS), preset=9 | lzma.PRESET_EXTREME)
    )
    back = RunResult.load(tmp)
    if not _same_numbers(back, res):
        tmp.unlink()
        raise ValueError(f"{dst} would not read back as {run_dir}; nothing changed")
    os.replace(tmp, dst)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    (run_dir / RECORDS_FILE).unlink(missing_ok=True)
    return dst


def _same_numbers(a: RunResult, b: RunResult, tol_ms: float = 1e-3) -> bool:
    """Everything but chunk times equal, and every record's derived latencies within `tol_ms`."""
    da, db = a.to_dict(), b.to_dict()
    if {k: v for k, v in da.items() if k != "records"} != {k: v for k, v in db.items() if k != "records"}:
        return False
    if len(a.records) != len(b.records):
        return False

    tol_ms += 1e-9  # two offsets rounded half to even can move a gap by exactly 1 us: float slack

    def close(x: float | None, y: float | None) -> bool:
        return (x is None) == (y is None) and (x is None or y is None or abs(x - y) <= tol_ms)

    for x, y in zip(a.records, b.records, strict=True):
        if len(x.chunk_mono_ns) != len(y.chunk_mono_ns) or x.first_token_mono_ns != y.first_token_mono_ns:
            return False
        if not all(close(getattr(x, k), getattr(y, k)) for k in ("ttft_ms", "tpot_ms", "e2el_ms")):
            return False
        if any(abs(i - j) > tol_ms for i, j in zip(x.itl_ms, y.itl_ms, strict=True)):
            return False
    return True


def record_line(record: Record) -> bytes:
    """One line of requests.jsonl: the record's fields and its derived metrics."""
    return dumps(record) + b"\n"


def read_records_file(path: Path) -> list[dict[str, Any]]:
    """The lines of a requests.jsonl as parsed JSON; stops at a line cut short by a crash."""
    records: list[dict[str, Any]] = []
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


class ResultWriter:
    """Writes one run directory while the run goes on; safe to interrupt at any point.

    The runner fills `result` (summary, energy, ...) before `finish`.
    """

    def __init__(self, run_dir: str | Path, metadata: RunMetadata) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.result = RunResult(metadata=metadata, path=self.run_dir / RESULT_FILE)
        self._fd = os.open(self.run_dir / RECORDS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._write()

    @property
    def records(self) -> list[Record]:
        return self.result.records

    def append(self, record: Record) -> None:
        """Persist one finished request immediately (one write syscall per line)."""
        self.result.records.append(record)
        os.write(self._fd, record_line(record))

    def finish(self, status: Status = "complete", error: str | None = None) -> Path:
        """Write the final result.json; a status other than "complete" marks it incomplete."""
        self.result.status, self.result.error = status, error
        self.result.metadata.end_epoch_ns = time.time_ns()
        self._write()
        self.close()
        if any(r.energy is not None for r in self.records):  # attributed after they were appended
            atomic_write(self.run_dir / RECORDS_FILE, b"".join(record_line(r) for r in self.records))
        return self.run_dir / RESULT_FILE

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self) -> None:
        doc = self.result.to_dict()
        if self.result.status == "running":
            doc["records"] = []  # they are in requests.jsonl until the end
        atomic_write(self.run_dir / RESULT_FILE, orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))

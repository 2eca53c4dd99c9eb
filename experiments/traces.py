"""Trace replay: which rows of a production trace, how fast, and what a server too short for a row gets.

A trace replay is (1) the rows read from the file (Azure LLM inference CSV, a generic CSV, Mooncake JSONL),
time-ordered; (2) a slice: rows from `start_s` for `duration_s` of trace time, or `count` rows from
`first_row`; (3) requests longer than the served context (`max_model_len`) clipped or skipped by a named
policy, and counted; (4) the slice's own gaps times a time scale: given (`time_scale`), or derived from a
target mean offered rate (`rate`: the scale that makes (n - 1) / span equal it). `select_trace` does all
four without building a prompt (the dry run, the campaign and the planner need only lengths and times);
`trace_specs` then builds the prompts, keeping the trace's prefix reuse (Mooncake `hash_ids`, one per
`block_size` prompt tokens: equal ids give equal prompt blocks).
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from experiments.schema.run import OVERLENGTH_POLICIES, TraceInfo
from experiments.workloads import (
    RequestSpec,
    TokenCounter,
    TokenizerLike,
    WorkloadError,
    counted_prompt,
    fit_prompt,
    random_prompt,
    random_words,
    sample_ids,
)

# Mooncake traces: one hash id per block of this many prompt tokens.
MOONCAKE_BLOCK_SIZE = 512
TRACE_SUFFIXES = (".csv", ".jsonl")


def is_trace_file(path: str | Path | None) -> bool:
    """A dataset path that names a trace (by its extension), not a ShareGPT JSON file."""
    return path is not None and Path(path).suffix.lower() in TRACE_SUFFIXES


@dataclass(frozen=True)
class TraceReplay:
    """How to replay a trace: the slice, the speed and the over-length policy (see the module doc).

    `time_scale` multiplies the trace's gaps (> 1 slower); `rate` instead rescales the slice to that mean
    offered rate (req/s); neither: the trace's own times. The slice is by time (`start_s`, `duration_s`, in
    trace seconds from the first row) or by rows (`first_row`, 0-based in time order); `count` caps the rows
    either way. `max_model_len` None means no limit is known (nothing clipped).
    """

    time_scale: float | None = None
    rate: float | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    first_row: int = 0
    count: int | None = None
    max_model_len: int | None = None
    overlength: str = "clip"

    def __post_init__(self) -> None:
        if self.time_scale is not None and self.rate is not None:
            raise WorkloadError(
                "give a trace time scale or a target mean rate, not both (the rate sets the scale)"
            )
        for name in ("time_scale", "rate", "duration_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise WorkloadError(f"trace {name} must be a positive number, got {value}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise WorkloadError(f"trace start_s must be >= 0 seconds, got {self.start_s}")
        if self.first_row < 0:
            raise WorkloadError(f"trace first_row must be >= 0, got {self.first_row}")
        if self.first_row and (self.start_s or self.duration_s is not None):
            raise WorkloadError("slice a trace by time (start, duration) or by rows (first row), not both")
        if self.count is not None and self.count < 1:
            raise WorkloadError(f"trace count must be >= 1 rows, got {self.count}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise WorkloadError(f"max_model_len must be >= 2 tokens, got {self.max_model_len}")
        if self.overlength not in OVERLENGTH_POLICIES:
            raise WorkloadError(
                f"unknown over-length policy {self.overlength!r}; use {' or '.join(OVERLENGTH_POLICIES)}"
            )


@dataclass(frozen=True)
class TraceRow:
    """One trace row: trace time (s), lengths, and its prompt's block hash ids (Mooncake)."""

    timestamp_s: float
    input_len: int
    output_len: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TraceSelection:
    """What a replay sends: rows with `arrival_s` offsets (scaled), lengths after the over-length policy."""

    rows: tuple[TraceRow, ...]
    arrivals_s: tuple[float, ...]
    info: TraceInfo

    def __len__(self) -> int:
        return len(self.rows)


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------

# Column spellings accepted for CSV traces: (timestamp column, seconds per unit or None for datetime text).
_CSV_TIME_COLUMNS: tuple[tuple[str, float | None], ...] = (
    ("TIMESTAMP", None),  # Azure LLM inference trace
    ("timestamp_s", 1.0),
    ("timestamp", 1.0),
    ("timestamp_ms", 1e-3),
)
_CSV_LENGTH_COLUMNS = (("ContextTokens", "GeneratedTokens"), ("input_length", "output_length"))


def _to_int(value: Any, what: str, where: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise WorkloadError(f"{where}: {what} is not a number: {value!r}") from None
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise WorkloadError(f"{where}: {what} must be a whole number >= 0, got {value!r}")
    return int(number)


def _to_float(value: Any, what: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise WorkloadError(f"{where}: {what} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise WorkloadError(f"{where}: {what} must be finite, got {value!r}")
    return number


def _parse_datetime(value: str, where: str) -> float:
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WorkloadError(f"{where}: TIMESTAMP is not a date-time: {value!r}") from None
    if stamp.tzinfo is None:  # naive: read as UTC, never as local time (DST would bend offsets)
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _csv_rows(path: Path) -> Iterator[TraceRow]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        time_col = next(((c, unit) for c, unit in _CSV_TIME_COLUMNS if c in columns), None)
        len_cols = next((pair for pair in _CSV_LENGTH_COLUMNS if set(pair) <= set(columns)), None)
        if time_col is None or len_cols is None:
            raise WorkloadError(
                f"{path}: unrecognised CSV columns {columns}; need TIMESTAMP,ContextTokens,GeneratedTokens "
                f"(Azure) or timestamp[_s|_ms],input_length,output_length"
            )
        (tcol, unit), (icol, ocol) = time_col, len_cols
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            raw_t = rec.get(tcol)
            if raw_t is None or raw_t == "":
                raise WorkloadError(f"{where}: missing {tcol}")
            t = _parse_datetime(raw_t, where) if unit is None else _to_float(raw_t, tcol, where) * unit
            yield TraceRow(t, _to_int(rec.get(icol), icol, where), _to_int(rec.get(ocol), ocol, where))


def _jsonl_rows(path: Path) -> Iterator[TraceRow]:
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise WorkloadError(f"{where}: not valid JSON: {exc}") from None
            if not isinstance(rec, dict):
                raise WorkloadError(f"{where}: expected a JSON object per line")
            missing = [k for k in ("timestamp", "input_length", "output_length") if k not in rec]
            if missing:
                raise WorkloadError(f"{where}: missing {', '.join(missing)} (Mooncake trace fields)")
            hash_ids = rec.get("hash_ids") or []
            if not isinstance(hash_ids, list) or not all(isinstance(h, int) for h in hash_ids):
                raise WorkloadError(f"{where}: hash_ids must be a list of integers")
            t = _to_float(rec["timestamp"], "timestamp", where) * 1e-3  # Mooncake timestamps are in ms
            n_in = _to_int(rec["input_length"], "input_length", where)
            n_out = _to_int(rec["output_length"], "output_length", where)
            yield TraceRow(t, n_in, n_out, tuple(hash_ids))


def read_trace(path: str | Path) -> tuple[list[TraceRow], int]:
    """(usable rows in time order, rows skipped for 0 input or output tokens) of a trace file."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"trace file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = list(_csv_rows(path))
    elif suffix == ".jsonl":
        rows = list(_jsonl_rows(path))
    else:
        raise WorkloadError(
            f"{path}: unknown trace format {suffix!r}; use .csv (Azure/generic) or .jsonl (Mooncake)"
        )
    usable = [r for r in rows if r.input_len > 0 and r.output_len > 0]
    if not usable:
        raise WorkloadError(f"{path}: no trace rows with input and output tokens > 0")
    usable.sort(key=lambda r: r.timestamp_s)
    return usable, len(rows) - len(usable)


# ---------------------------------------------------------------------------------------------------------
# Selecting
# ---------------------------------------------------------------------------------------------------------


def _fit_context(row: TraceRow, limit: int, block_size: int) -> TraceRow | None:
    """The row cut to `limit` tokens of prompt + output (its prompt's end dropped, with the hash ids of
    blocks past the cut), or None when its output alone leaves no room for a prompt token."""
    room = limit - row.output_len
    if room < 1:
        return None
    return replace(row, input_len=room, hash_ids=row.hash_ids[: math.ceil(room / block_size)])


def prefix_chains(rows: Sequence[TraceRow], block_size: int = MOONCAKE_BLOCK_SIZE) -> list[tuple[int, ...]]:
    """Each row's whole prompt blocks as nodes of one prefix tree: equal node = equal hash id behind an equal
    prefix (vLLM's block hash chains). A partial last block gets no node (a cache keeps whole blocks)."""
    nodes: dict[tuple[int, int], int] = {}  # (parent node, hash id) -> node
    chains = []
    for r in rows:
        chain, parent = [], -1
        for k, h in enumerate(r.hash_ids):
            if (k + 1) * block_size > r.input_len:
                break
            parent = nodes.setdefault((parent, h), len(nodes))
            chain.append(parent)
        chains.append(tuple(chain))
    return chains


def prefix_reuse(rows: Sequence[TraceRow], block_size: int = MOONCAKE_BLOCK_SIZE) -> float | None:
    """Share of prompt tokens in whole blocks whose prefix came earlier in `rows`: what an unbounded prefix
    cache could serve. None when no row has hash ids."""
    if not any(r.hash_ids for r in rows):
        return None
    seen: set[int] = set()
    reused = 0
    for chain in prefix_chains(rows, block_size):
        reused += block_size * sum(node in seen for node in chain)
        seen.update(chain)
    total = sum(r.input_len for r in rows)
    return reused / total if total else None


def select_trace(
    path: str | Path, replay: TraceReplay = TraceReplay(), block_size: int = MOONCAKE_BLOCK_SIZE
) -> TraceSelection:
    """The rows a replay sends, their arrival offsets and what was done to get them (see the module doc)."""
    if block_size < 1:
        raise WorkloadError(f"block_size must be >= 1, got {block_size}")
    rows, zero_rows = read_trace(path)
    t0 = rows[0].timestamp_s
    if replay.first_row:
        if replay.first_row >= len(rows):
            raise WorkloadError(f"{path}: first row {replay.first_row} is past its {len(rows)} usable rows")
        lo, hi = replay.first_row, len(rows)
    else:
        times = [r.timestamp_s - t0 for r in rows]
        lo = bisect.bisect_left(times, replay.start_s)
        hi = (
            len(rows)
            if replay.duration_s is None
            else bisect.bisect_left(times, replay.start_s + replay.duration_s)
        )
        if lo >= hi:
            raise WorkloadError(
                f"{path}: no rows from {replay.start_s:g} s for {replay.duration_s or math.inf:g} s "
                f"(the trace spans {times[-1]:.0f} s)"
            )
    if replay.count is not None:
        hi = min(hi, lo + replay.count)
    window = rows[lo:hi]
    kept: list[TraceRow] = []
    clipped = clipped_tokens = skipped = 0
    limit = replay.max_model_len
    for row in window:
        if limit is None or row.input_len + row.output_len <= limit:
            kept.append(row)
            continue
        fitted = _fit_context(row, limit, block_size) if replay.overlength == "clip" else None
        if fitted is None:
            skipped += 1
        else:
            clipped += 1
            clipped_tokens += row.input_len - fitted.input_len
            kept.append(fitted)
    if not kept:
        raise WorkloadError(
            f"{path}: every selected row is longer than max_model_len {limit} ({replay.overlength}ped)"
        )
    times = np.array([r.timestamp_s for r in kept])
    span = float(times[-1] - times[0])
    trace_rate = (len(kept) - 1) / span if len(kept) > 1 and span > 0 else None
    if replay.rate is not None:
        if trace_rate is None:
            raise WorkloadError(
                f"{path}: the selected rows span no time, so no scale gives a mean rate; select more rows"
            )
        scale = trace_rate / replay.rate
    else:
        scale = replay.time_scale or 1.0
    arrivals = tuple(float(x) for x in (times - times[0]) * scale)
    info = TraceInfo(
        path=str(path),
        rows_read=len(rows),
        zero_length_skipped=zero_rows,
        first_row=lo,
        start_s=float(window[0].timestamp_s - t0),
        requests=len(kept),
        trace_span_s=span,
        trace_rate=trace_rate,
        time_scale=scale,
        offered_rate=None if trace_rate is None else trace_rate / scale,
        max_model_len=limit,
        overlength=replay.overlength,
        clipped=clipped,
        clipped_tokens=clipped_tokens,
        skipped=skipped,
        prefix_reuse=prefix_reuse(kept, block_size),
        block_size=block_size if any(r.hash_ids for r in kept) else None,
    )
    return TraceSelection(tuple(kept), arrivals, info)


def describe_trace(info: TraceInfo, arrival: str) -> str:
    """One line on a trace replay: the slice, the speed (nominal mean rate) and the over-length policy."""
    if arrival == "trace":
        own = f"{info.trace_rate:.3g}" if info.trace_rate else "-"
        offered = f"{info.offered_rate:.3g}" if info.offered_rate else "-"
        speed = f"the trace's own times x{info.time_scale:.4g} (mean {offered} req/s offered; own {own})"
    else:
        speed = "its lengths only, with generated arrivals"
    end = info.start_s + info.trace_span_s
    reuse = (
        f"; prefix reuse {info.prefix_reuse:.0%} of prompt tokens" if info.prefix_reuse is not None else ""
    )
    if info.max_model_len:
        fit = (
            f"rows longer than max_model_len {info.max_model_len}: {info.overlength} ({info.clipped} "
            f"clipped, {info.skipped} skipped)"
        )
    else:
        fit = f"rows longer than the served context: {info.overlength} (its limit is read at run time)"
    return (
        f"{speed}; {info.requests} rows from row {info.first_row} ({info.start_s:.0f}-{end:.0f} s of trace "
        f"time); {fit}{reuse}"
    )


# ---------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------


def _block_prompt(
    tokenizer: TokenCounter,
    hash_ids: Sequence[int],
    n_tokens: int,
    seed: int,
    block_size: int,
    rng: np.random.Generator,
) -> str:
    """Prompt whose blocks are a function of (seed, hash id): equal hash ids give equal prefixes.

    With a tokenizer that can only count, a block is `block_size` words (at least as many tokens)."""
    if not isinstance(tokenizer, TokenizerLike):
        words: list[str] = []
        for h in hash_ids:
            if len(words) >= n_tokens:
                break
            words += random_words(block_size, np.random.default_rng([seed, h]))
        return counted_prompt(tokenizer, words[:n_tokens] or random_words(n_tokens, rng), n_tokens, rng)
    ids: list[int] = []
    for h in hash_ids:
        if len(ids) >= n_tokens:
            break
        ids += sample_ids(tokenizer, block_size, np.random.default_rng([seed, h]))
    ids = ids[:n_tokens]
    if len(ids) < n_tokens:
        ids += sample_ids(tokenizer, n_tokens - len(ids), rng)
    return fit_prompt(tokenizer, ids, n_tokens, rng)


def trace_specs(
    selection: TraceSelection, tokenizer: TokenCounter, seed: int, first: int = 0, count: int | None = None
) -> list[RequestSpec]:
    """Requests of `count` selected rows from `first` (default all), prompts seeded by `seed`."""
    rng = np.random.default_rng(seed)
    block = selection.info.block_size or MOONCAKE_BLOCK_SIZE
    stop = len(selection) if count is None else min(len(selection), first + count)
    specs = []
    for i in range(first, stop):
        row = selection.rows[i]
        if row.hash_ids:
            prompt = _block_prompt(tokenizer, row.hash_ids, row.input_len, seed, block, rng)
        else:
            prompt = random_prompt(tokenizer, row.input_len, rng)
        specs.append(
            RequestSpec(
                index=i - first,
                prompt=prompt,
                input_tokens=row.input_len,
                output_tokens=row.output_len,
                arrival_s=selection.arrivals_s[i] - selection.arrivals_s[first],
            )
        )
    return specs


def trace_workload(
    path: str | Path,
    tokenizer: TokenCounter,
    seed: int,
    replay: TraceReplay = TraceReplay(),
    block_size: int = MOONCAKE_BLOCK_SIZE,
) -> list[RequestSpec]:
    """`trace_specs` of `select_trace`: the requests of a trace replay, prompts built."""
    return trace_specs(select_trace(path, replay, block_size), tokenizer, seed)

"""The power CSV: column layout, a streaming writer that flushes periodically, and a reader for plots."""

from __future__ import annotations

import csv
import logging
import lzma
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np

from monitor.fields import VALUE_INDEX

log = logging.getLogger(__name__)

MIB = 2**20

# Spec'd columns per GPU, then the counter column, then extras (all per GPU), then timestamps.
BASE_COLUMNS = ("power", "utilization", "temperature", "memory_used", "memory_total", "graphics_clock",
                "memory_clock")  # fmt: skip
EXTRA_COLUMNS = ("power_instant", "power_average", "memory_utilization", "sm_clock", "throttle_reasons",
                 "pstate", "missing")  # fmt: skip
CSV_UNITS = {
    "timestamp": "epoch seconds",
    "datetime": "ISO 8601 UTC",
    "power": "W, nvmlDeviceGetPowerUsage (1 s average on Ampere and newer)",
    "utilization": "% (GPU busy)",
    "temperature": "C",
    "memory_used": "MiB",
    "memory_total": "MiB",
    "graphics_clock": "MHz",
    "memory_clock": "MHz",
    "energy_mj": "mJ, nvmlDeviceGetTotalEnergyConsumption counter (since driver load, wraps); read at the "
    "first and last sample and every counter_read_every_s (see the JSON) in between, empty where not read",
    "power_instant": "W, NVML_FI_DEV_POWER_INSTANT",
    "power_average": "W, NVML_FI_DEV_POWER_AVERAGE",
    "memory_utilization": "% (memory controller busy)",
    "sm_clock": "MHz",
    "throttle_reasons": "bitmask, nvmlClocksEventReason*",
    "pstate": "P-state number",
    "missing": "1 when an NVML read of this sample failed",
    "epoch_ns": "time.time_ns() at sample start",
    "monotonic_ns": "time.monotonic_ns() at sample start",
}

# CSV column suffix -> (stored value name, scale). Power is stored in mW, memory in bytes.
_VALUE_COLUMNS = {
    "power": ("power_mw", 1e-3),
    "utilization": ("gpu_util_pct", 1.0),
    "temperature": ("temperature_c", 1.0),
    "memory_used": ("mem_used_bytes", 1 / MIB),
    "memory_total": ("mem_total_bytes", 1 / MIB),
    "graphics_clock": ("graphics_clock_mhz", 1.0),
    "memory_clock": ("mem_clock_mhz", 1.0),
    "power_instant": ("power_instant_mw", 1e-3),
    "power_average": ("power_average_mw", 1e-3),
    "memory_utilization": ("mem_util_pct", 1.0),
    "sm_clock": ("sm_clock_mhz", 1.0),
    "throttle_reasons": ("throttle_reasons", 1.0),
    "pstate": ("pstate", 1.0),
}
_DECIMALS = {"power": 3, "power_instant": 3, "power_average": 3}


def csv_columns(gpu_ids: Sequence[int]) -> list[str]:
    """The CSV header for these GPUs."""
    cols = ["timestamp", "datetime"]
    cols += [f"gpu_{i}_{c}" for i in gpu_ids for c in BASE_COLUMNS]
    cols += [f"gpu_{i}_energy_mj" for i in gpu_ids]
    cols += [f"gpu_{i}_{c}" for i in gpu_ids for c in EXTRA_COLUMNS]
    return [*cols, "epoch_ns", "monotonic_ns"]


def _fmt(value: float, suffix: str) -> str:
    if value != value:  # NaN: missing
        return ""
    scale = _VALUE_COLUMNS[suffix][1]
    decimals = _DECIMALS.get(suffix, 0)
    return f"{value * scale:.{decimals}f}"


class CsvSink:
    """Writes one row per sample and flushes every `flush_every_s` so a crash or Ctrl-C keeps the data."""

    def __init__(self, path: Path, gpu_ids: Sequence[int], flush_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.gpu_ids = list(gpu_ids)
        self.flush_every_ns = int(flush_every_s * 1e9)
        self._file: IO[str] | None = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(csv_columns(self.gpu_ids))
        self._file.flush()
        self._last_flush = time.monotonic_ns()
        self._idx = {s: VALUE_INDEX[v] for s, (v, _) in _VALUE_COLUMNS.items()}
        self.rows = 0

    def write(
        self,
        epoch_ns: int,
        monotonic_ns: int,
        values: Sequence[Sequence[float]],
        energy_mj: Sequence[int | None],
        failed: Sequence[bool],
    ) -> None:
        """Append one sample; `values[gpu][value]` in stored units, NaN where missing."""
        if self._file is None:
            return
        stamp = datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
        row: list[str | int] = [f"{epoch_ns / 1e9:.6f}", stamp]
        for vals in values:
            row += [_fmt(vals[self._idx[c]], c) for c in BASE_COLUMNS]
        row += ["" if e is None else e for e in energy_mj]
        for g, vals in enumerate(values):
            row += [_fmt(vals[self._idx[c]], c) for c in EXTRA_COLUMNS[:-1]]
            row.append(1 if failed[g] else 0)
        row += [epoch_ns, monotonic_ns]
        self._writer.writerow(row)
        self.rows += 1
        if monotonic_ns - self._last_flush >= self.flush_every_ns:
            self.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._last_flush = time.monotonic_ns()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None


@dataclass
class PowerCsv:
    """A power CSV read back: float columns (NaN where empty) and the GPU ids found in the header."""

    path: Path
    gpu_ids: list[int]
    columns: dict[str, np.ndarray]

    @property
    def timestamp(self) -> np.ndarray:
        return self.columns["timestamp"]

    def gpu(self, gpu: int, suffix: str) -> np.ndarray | None:
        """Column gpu_<gpu>_<suffix>, or None if absent."""
        return self.columns.get(f"gpu_{gpu}_{suffix}")

    def __len__(self) -> int:
        return len(self.columns["timestamp"])


ARCHIVE_SUFFIX = ".xz"  # an archived power CSV: the same text, xz-compressed (`archive_power_csv`)


def power_csv_file(path: Path | str) -> Path:
    """The power CSV at `path`, or its archive `path.xz` where only that is kept (committed runs)."""
    path = Path(path)
    packed = path.with_name(path.name + ARCHIVE_SUFFIX)
    return packed if not path.exists() and packed.exists() else path


def read_power_csv(path: Path | str) -> PowerCsv:
    """Read a CSV written by CsvSink (or any CSV with timestamp and gpu_<i>_power columns); `path` may
    name the CSV of an archived run (read from its `.xz`) or the `.xz` itself."""
    path = power_csv_file(path)
    opener = lzma.open if path.suffix == ARCHIVE_SUFFIX else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path} is empty; expected a header row") from None
        rows = [r for r in reader if len(r) == len(header)]  # a torn last line (crash) is dropped
    if "timestamp" not in header:
        raise ValueError(f"{path} has no timestamp column; is it a power CSV from `python -m monitor`?")
    gpu_ids = sorted({int(c.split("_")[1]) for c in header if c.startswith("gpu_") and c.endswith("_power")})
    if not gpu_ids:
        raise ValueError(f"{path} has no gpu_<i>_power column")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        if name == "datetime":
            continue
        columns[name] = np.array([float(r[j]) if r[j] != "" else np.nan for r in rows], dtype=np.float64)
    return PowerCsv(path=path, gpu_ids=gpu_ids, columns=columns)


def archive_power_csv(path: Path | str) -> Path:
    """Compress a power CSV for keeping in git (xz, about 7x smaller): `path.xz` replaces `path` once it
    reads back to the same columns; returns the archive's path. Readers find it by the CSV's name."""
    path = Path(path)
    dst, tmp = path.with_name(path.name + ARCHIVE_SUFFIX), path.with_name(path.name + ".new" + ARCHIVE_SUFFIX)
    tmp.write_bytes(lzma.compress(path.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    a, b = read_power_csv(path), read_power_csv(tmp)
    same = a.gpu_ids == b.gpu_ids and a.columns.keys() == b.columns.keys()
    if not same or not all(np.array_equal(a.columns[k], b.columns[k], equal_nan=True) for k in a.columns):
        tmp.unlink()
        raise ValueError(f"{dst} would not read back as {path}; nothing changed")
    os.replace(tmp, dst)
    path.unlink()
    return dst

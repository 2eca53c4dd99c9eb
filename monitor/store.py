"""The sample store: growable numpy arrays the sampling thread appends to, and `Samples`, a copy of them."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from monitor.fields import READS, VALUE_INDEX, VALUE_NAMES

# Array name -> fill value of rows not written yet (None: left uninitialised, always written).
_FILL: dict[str, float | int | None] = {
    "epoch_ns": None,
    "mono_ns": None,
    "gpu_mono_ns": None,
    "energy_read_ns": None,
    "values": np.nan,
    "latency_ns": -1,
    "failed_mask": None,
}


@dataclass
class Samples:
    """Samples as arrays: axis 0 sample, axis 1 GPU (position in gpu_ids), axis 2 value/read."""

    epoch_ns: np.ndarray
    monotonic_ns: np.ndarray
    gpu_monotonic_ns: np.ndarray  # when each GPU's reads began
    energy_read_ns: np.ndarray  # energy counter read began / ended (0, 0 where not read)
    values: np.ndarray  # stored units (mW, mJ, bytes, MHz, %, C); NaN where missing or not read
    latency_ns: np.ndarray  # per read; -1 where not read or failed
    failed_mask: np.ndarray  # bit r set: read r failed

    def __len__(self) -> int:
        return len(self.epoch_ns)

    def value(self, g: int, name: str) -> np.ndarray:
        """One stored value (see monitor.fields.VALUE_NAMES) of GPU position g."""
        return self.values[:, g, VALUE_INDEX[name]]

    @property
    def failed(self) -> np.ndarray:
        return self.failed_mask != 0


class SampleStore:
    """One row per sample. The sampling thread is the only writer; readers take copies with `slice`."""

    def __init__(self, n_gpus: int, capacity: int = 4096) -> None:
        self.n = 0
        self.lock = threading.Lock()
        self.epoch_ns = np.zeros(capacity, np.int64)
        self.mono_ns = np.zeros(capacity, np.int64)
        self.gpu_mono_ns = np.zeros((capacity, n_gpus), np.int64)
        self.energy_read_ns = np.zeros((capacity, n_gpus, 2), np.int64)
        self.values = np.full((capacity, n_gpus, len(VALUE_NAMES)), np.nan)
        self.latency_ns = np.full((capacity, n_gpus, len(READS)), -1, np.int64)
        self.failed_mask = np.zeros((capacity, n_gpus), np.int32)

    def row(self) -> int:
        """Index of the next row, doubling the arrays when full (writer only)."""
        if self.n == len(self.epoch_ns):
            with self.lock:
                for name, fill in _FILL.items():
                    old = getattr(self, name)
                    new = np.zeros((2 * len(old), *old.shape[1:]), old.dtype)
                    new[: len(old)] = old
                    if fill is not None:
                        new[len(old) :] = fill
                    setattr(self, name, new)
        return self.n

    def commit(self) -> None:
        """Make the row filled since `row()` visible to readers."""
        with self.lock:
            self.n += 1

    def slice(self, start_mono_ns: int | None = None, end_mono_ns: int | None = None) -> Samples:
        """Copy of the samples whose start time lies in [start, end] (all when None)."""
        with self.lock:
            n = self.n
            mono = self.mono_ns[:n]
            lo = 0 if start_mono_ns is None else int(np.searchsorted(mono, start_mono_ns, "left"))
            hi = n if end_mono_ns is None else int(np.searchsorted(mono, end_mono_ns, "right"))
            sl = slice(lo, hi)
            return Samples(
                epoch_ns=self.epoch_ns[sl].copy(),
                monotonic_ns=self.mono_ns[sl].copy(),
                gpu_monotonic_ns=self.gpu_mono_ns[sl].copy(),
                energy_read_ns=self.energy_read_ns[sl].copy(),
                values=self.values[sl].copy(),
                latency_ns=self.latency_ns[sl].copy(),
                failed_mask=self.failed_mask[sl].copy(),
            )

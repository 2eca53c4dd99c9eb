"""The sampling thread: reads every GPU every interval into a SampleStore (and a CSV), and keeps going.

Power and the other fields are read on every sample, the energy counter only where
monitor.counter_schedule says (it is slow to read on some GPUs and steps only every ~100 ms).

A failing read leaves its values NaN, marks the sample failed for that GPU and logs a rate-limited
warning; a read the GPU does not support is recorded once and no longer polled.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.backends import GpuBackend
from monitor.clock import Clock
from monitor.counter_schedule import CounterSchedule
from monitor.csv_io import CsvSink
from monitor.fields import READ_NAMES, READS, VALUE_NAMES
from monitor.nvml_lib import GPU_LOST_ERRORS, UNSUPPORTED_ERRORS, describe
from monitor.store import SampleStore

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.01
ENERGY_READ = READ_NAMES.index("energy")
_METHODS = tuple(r.method for r in READS)
_SLOTS = tuple(tuple(VALUE_NAMES.index(v) for v in r.values) for r in READS)


class RateLimitedWarnings:
    """Logs the first occurrence of each key, then at most one line per `every_s` with a count."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_ns = int(every_s * 1e9)
        self._state: dict[tuple[Any, ...], list[int]] = {}  # key -> [last log ns, suppressed]

    def warn(self, key: tuple[Any, ...], message: str) -> None:
        now = time.monotonic_ns()
        state = self._state.get(key)
        if state is None:
            self._state[key] = [now, 0]
            log.warning("%s (further repeats are rate limited)", message)
        elif now - state[0] >= self.every_ns:
            log.warning("%s (%d more since the last warning)", message, state[1])
            state[0], state[1] = now, 0
        else:
            state[1] += 1


def read_gpu_info(backend: GpuBackend, gpu_ids: Sequence[int]) -> dict[str, Any]:
    """Name, power limit, clocks and P-state of each GPU now (None where a read fails)."""

    def safe(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as err:
            log.warning("static read %s%s failed: %s", getattr(fn, "__name__", fn), args, describe(err))
            return None

    gpus = {}
    for gpu in gpu_ids:
        limit = safe(backend.power_limit_mw, gpu)
        mem = safe(backend.memory, gpu)
        gpus[str(gpu)] = {
            "name": safe(backend.gpu_name, gpu),
            "power_limit_w": None if limit is None else limit / 1000,
            "memory_total_bytes": None if mem is None else mem[1],
            "graphics_clock_mhz": safe(backend.graphics_clock_mhz, gpu),
            "sm_clock_mhz": safe(backend.sm_clock_mhz, gpu),
            "mem_clock_mhz": safe(backend.mem_clock_mhz, gpu),
            "pstate": safe(backend.pstate, gpu),
            "temperature_c": safe(backend.temperature_c, gpu),
        }
    return {"backend": backend.name, "driver_version": safe(backend.driver_version), "gpus": gpus}


class Sampler:
    """Samples `gpu_ids` (NVML indices) every `interval_s` in a daemon thread.

    `reads` names the monitor.fields reads to take; the energy counter among them is read where
    `counters` says. `csv_path` streams one row per sample. Time (stamps, waits) is `clock`'s, by
    default the backend's.
    """

    def __init__(
        self,
        backend: GpuBackend,
        gpu_ids: Sequence[int],
        interval_s: float,
        reads: Sequence[str],
        csv_path: Path | None = None,
        csv_flush_every_s: float = 1.0,
        counters: CounterSchedule | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.backend = backend
        self.clock: Clock = clock or backend.clock
        self.gpu_ids = list(gpu_ids)
        self.interval_s = interval_s
        self.counters = counters or CounterSchedule(len(self.gpu_ids), interval_s, None)
        self.csv_path = csv_path
        self.csv_flush_every_s = csv_flush_every_s
        n = len(self.gpu_ids)
        self._enabled = [[r.name in reads for r in READS] for _ in range(n)]
        self.unsupported: list[set[str]] = [set() for _ in range(n)]
        self.last_error: dict[tuple[int, str], str] = {}
        self._warnings = RateLimitedWarnings()
        self.store = SampleStore(n)
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._csv: CsvSink | None = None
        self.started_epoch_ns: int | None = None
        self.started_mono_ns: int | None = None
        self.stopped_mono_ns: int | None = None
        self._stop_requested_mono_ns: int | None = None
        self.skipped_ticks = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the CSV (when a path was given) and start the thread."""
        if self._thread is not None:
            raise RuntimeError("PowerMonitor already started; create a new one to sample again")
        if self.csv_path is not None:
            self._csv = CsvSink(self.csv_path, self.gpu_ids, self.csv_flush_every_s)
        self.started_epoch_ns, self.started_mono_ns = self.clock.time_ns(), self.clock.monotonic_ns()
        self._thread = self.clock.thread(self._run, "power-monitor")
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then flush and close the CSV. Safe to call twice."""
        if self._thread is None or self.stopped_mono_ns is not None:
            return
        self._stop_requested_mono_ns = self.clock.monotonic_ns()
        self._stop_event.set()
        self.clock.join(self._thread, max(5.0, 10 * self.interval_s))
        if self._thread.is_alive():  # pragma: no cover - a hung NVML call
            log.warning("power monitor thread did not stop within the timeout; CSV closed anyway")
        self.stopped_mono_ns = self.clock.monotonic_ns()
        if self._csv is not None:
            self._csv.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self.stopped_mono_ns is None

    def expected_samples(self) -> int:
        """Samples a sampler that never fell behind would have taken so far: one per tick until stop()
        was called, plus the last sample taken on the way out."""
        if self.started_mono_ns is None:
            return 0
        stopped = self._stop_requested_mono_ns
        elapsed_ns = (stopped or self.clock.monotonic_ns()) - self.started_mono_ns
        return int(elapsed_ns / 1e9 / self.interval_s) + 1 + (stopped is not None)

    # -- read bookkeeping (shared with the energy windows) -----------------------------------------

    def mark_unsupported(self, g: int, read: str, err: BaseException) -> None:
        """Record that GPU position g does not support `read`; it is not polled again."""
        if read in self.unsupported[g]:
            return
        r = READ_NAMES.index(read)
        self._enabled[g][r] = False
        self.unsupported[g].add(read)
        log.info("GPU %d: %s not supported (%s); recorded as null", self.gpu_ids[g], READS[r].nvml_call, err)

    def note_failure(self, g: int, read: str, err: BaseException) -> None:
        gpu = self.gpu_ids[g]
        self.last_error[(gpu, read)] = describe(err)
        self._warnings.warn(
            (gpu, read, type(err).__name__),
            f"GPU {gpu}: NVML read {read} failed ({describe(err)}); sample marked missing, sampling goes on",
        )

    # -- the thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        clock = self.clock
        next_ns = clock.monotonic_ns()
        while not self._stop_event.is_set():
            try:
                self._sample_once()
            except Exception as err:  # a bug must not kill the thread silently
                self._warnings.warn(("sample",), f"power sample failed: {describe(err)}")
            next_ns += interval_ns
            now = clock.monotonic_ns()
            if now >= next_ns:  # overran: drop the ticks we missed rather than bursting
                missed = (now - next_ns) // interval_ns + 1
                self.skipped_ticks += missed
                next_ns += missed * interval_ns
            # Sleep to the next tick in pieces: stop() is seen within 0.25 s at most, at a tick when the
            # interval is shorter (then the last sample, taken on the way out, is on the grid too).
            while (wait_ns := next_ns - clock.monotonic_ns()) > 0 and not self._stop_event.is_set():
                clock.sleep(min(wait_ns / 1e9, 0.25))
        try:  # the last sample reads every counter, so that the CSV's counter column spans the run
            self._sample_once(final=True)
        except Exception as err:
            self._warnings.warn(("sample",), f"power sample failed: {describe(err)}")

    def _sample_once(self, final: bool = False) -> None:
        """Read every enabled field of every GPU once (the energy counter only where due); plain lists
        here, one numpy store per row."""
        monotonic_ns = self.clock.monotonic_ns
        epoch, mono = self.clock.time_ns(), monotonic_ns()
        backend, n_reads, nan = self.backend, len(READS), math.nan
        rows: list[list[float]] = []
        lats: list[list[int]] = []
        gpu_t: list[int] = []
        masks: list[int] = []
        lost: list[bool] = []
        for g, gpu in enumerate(self.gpu_ids):
            vals = [nan] * len(VALUE_NAMES)
            lat = [-1] * n_reads
            mask, is_lost = 0, False
            enabled = self._enabled[g]
            gpu_t.append(monotonic_ns())
            for r in range(n_reads):
                if not enabled[r] or r == ENERGY_READ:
                    continue
                t0 = monotonic_ns()
                try:
                    v = getattr(backend, _METHODS[r])(gpu)
                except Exception as err:
                    if isinstance(err, UNSUPPORTED_ERRORS):
                        self.mark_unsupported(g, READS[r].name, err)
                        continue
                    mask |= 1 << r
                    self.note_failure(g, READS[r].name, err)
                    if isinstance(err, GPU_LOST_ERRORS):  # the other reads would fail the same way
                        mask |= sum(1 << k for k in range(r + 1, n_reads) if enabled[k] and k != ENERGY_READ)
                        is_lost = True
                        break
                    continue
                lat[r] = monotonic_ns() - t0
                slots = _SLOTS[r]
                if len(slots) == 1:
                    vals[slots[0]] = v
                else:
                    for k, x in zip(slots, v, strict=True):
                        vals[k] = x
            rows.append(vals)
            lats.append(lat)
            masks.append(mask)
            lost.append(is_lost)
        # The energy counter after every GPU's power, so that one slow counter read does not skew those.
        n = len(self.gpu_ids)
        energy_t: list[tuple[int, int]] = [(0, 0)] * n
        energies: list[int | None] = [None] * n
        took: list[int | None] = [None] * n  # how long each counter read took, None where not read
        for g, gpu in enumerate(self.gpu_ids):
            if not self._enabled[g][ENERGY_READ] or not self.counters.due(g, mono, final):
                continue
            if lost[g]:
                masks[g] |= 1 << ENERGY_READ
                took[g] = 0
                continue
            t0 = monotonic_ns()
            try:
                v = int(backend.total_energy_mj(gpu))
            except Exception as err:
                took[g] = monotonic_ns() - t0
                if isinstance(err, UNSUPPORTED_ERRORS):
                    self.mark_unsupported(g, "energy", err)
                else:
                    masks[g] |= 1 << ENERGY_READ
                    self.note_failure(g, "energy", err)
                continue
            t1 = monotonic_ns()
            lats[g][ENERGY_READ] = took[g] = t1 - t0
            rows[g][_SLOTS[ENERGY_READ][0]] = v
            energy_t[g], energies[g] = (t0, t1), v
        self.counters.after_sample(mono, took)
        store = self.store
        i = store.row()
        store.epoch_ns[i], store.mono_ns[i] = epoch, mono
        store.gpu_mono_ns[i] = gpu_t
        store.energy_read_ns[i] = energy_t
        store.values[i] = rows
        store.latency_ns[i] = lats
        store.failed_mask[i] = masks
        store.commit()
        if self._csv is not None:
            try:
                self._csv.write(epoch, mono, rows, energies, [m != 0 for m in masks])
            except OSError as err:
                log.error("writing %s failed (%s); CSV output stopped, sampling goes on", self.csv_path, err)
                self._csv = None

"""What a monitor run gives out: the JSON summary, a downsampled power timeline, read latency stats."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from monitor.csv_io import CSV_UNITS, csv_columns
from monitor.energy import split_static_dynamic, window_json
from monitor.fields import READS, VALUE_NAMES
from monitor.sampler import Sampler
from monitor.store import Samples
from monitor.windows import P_INSTANT, P_USAGE, WindowMeter


def power_timeline(
    s: Samples, gpu_ids: list[int], interval_s: float, max_points: int = 500
) -> dict[str, Any]:
    """Power per GPU over time, averaged into at most `max_points` time bins (for result JSON)."""
    if max_points < 1:
        raise ValueError("max_points must be >= 1")
    out: dict[str, Any] = {"epoch_ns": [], "power_w": {str(gpu): [] for gpu in gpu_ids}}
    if len(s) == 0:
        return {**out, "source": None, "points": 0, "samples": 0, "bin_s": None}
    field = P_INSTANT if not np.all(np.isnan(s.values[:, :, P_INSTANT])) else P_USAGE
    power = s.values[:, :, field] / 1000
    if len(s) <= max_points:  # every sample is a point
        bins, n_bins = np.arange(len(s)), len(s)
        bin_s = interval_s
    else:  # equal time bins
        edges = np.linspace(s.monotonic_ns[0], s.monotonic_ns[-1] + 1, max_points + 1)
        bins = np.clip(np.searchsorted(edges, s.monotonic_ns, "right") - 1, 0, max_points - 1)
        n_bins, bin_s = max_points, float(edges[1] - edges[0]) / 1e9
    counts = np.bincount(bins, minlength=n_bins)
    keep = counts > 0
    epoch = np.bincount(bins, weights=s.epoch_ns - s.epoch_ns[0], minlength=len(counts))[keep] / counts[keep]
    out["epoch_ns"] = [int(x) + int(s.epoch_ns[0]) for x in epoch]
    for g, gpu in enumerate(gpu_ids):
        p = power[:, g]
        ok = ~np.isnan(p)
        total = np.bincount(bins[ok], weights=p[ok], minlength=len(counts))[keep]
        n_ok = np.bincount(bins[ok], minlength=len(counts))[keep]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n_ok
        out["power_w"][str(gpu)] = [None if math.isnan(x) else round(float(x), 2) for x in mean]
    out.update(source=VALUE_NAMES[field], points=int(keep.sum()), samples=len(s), bin_s=bin_s)
    return out


def read_latency_stats(s: Samples) -> dict[str, dict[str, float | int | None]]:
    """NVML read latency per read (successful reads only): mean, p50, p99, max in microseconds."""
    stats: dict[str, dict[str, float | int | None]] = {}
    for r, read in enumerate(READS):
        lat = s.latency_ns[:, :, r].ravel()
        lat = lat[lat >= 0] / 1000
        if len(lat) == 0:
            stats[read.name] = {"n": 0, "mean_us": None, "p50_us": None, "p99_us": None, "max_us": None}
            continue
        stats[read.name] = {
            "n": len(lat),
            "mean_us": round(float(lat.mean()), 2),
            "p50_us": round(float(np.percentile(lat, 50)), 2),
            "p99_us": round(float(np.percentile(lat, 99)), 2),
            "max_us": round(float(lat.max()), 2),
        }
    return stats


def missing_spans(s: Samples, g: int, limit: int = 200) -> list[dict[str, int]]:
    """Runs of consecutive failed samples of GPU position g (at most `limit`)."""
    failed = s.failed[:, g]
    if not failed.any():
        return []
    padded = np.concatenate(([False], failed, [False])).astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == 1)
    ends = np.flatnonzero(np.diff(padded) == -1) - 1
    return [
        {
            "first_sample": int(a),
            "last_sample": int(b),
            "count": int(b - a + 1),
            "start_epoch_ns": int(s.epoch_ns[a]),
            "end_epoch_ns": int(s.epoch_ns[b]),
        }
        for a, b in list(zip(starts, ends, strict=True))[:limit]
    ]


def monitor_summary(
    sampler: Sampler, meter: WindowMeter, gpu_info: dict[str, Any], reads: list[str]
) -> dict[str, Any]:
    """Everything a result file needs about a monitor run, as a JSON-serializable dict."""
    s = sampler.store.slice()
    end = sampler.stopped_mono_ns or sampler.clock.monotonic_ns()
    started = sampler.started_mono_ns
    elapsed_s = (end - started) / 1e9 if started is not None else 0.0
    expected = sampler.expected_samples()
    per_gpu = {}
    for g, gpu in enumerate(sampler.gpu_ids):
        failed = int(s.failed[:, g].sum())
        per_gpu[str(gpu)] = {
            **gpu_info["gpus"][str(gpu)],
            "samples_ok": len(s) - failed,
            "samples_missing": failed,
            "missing_spans": missing_spans(s, g),
            "unsupported_reads": sorted(sampler.unsupported[g]),
        }
    idle = meter.idle_power_w
    splits = (
        {
            name: {str(k): v for k, v in split_static_dynamic(w, idle).items()}
            for name, w in meter.windows.items()
            if name != "idle"
        }
        if idle is not None
        else {}
    )
    return {
        "backend": gpu_info["backend"],
        "driver_version": gpu_info["driver_version"],
        "gpu_ids": list(sampler.gpu_ids),
        "gpus": per_gpu,
        "interval_s": sampler.interval_s,
        "reads": list(reads),
        "started_epoch_ns": sampler.started_epoch_ns,
        "duration_s": elapsed_s,
        "sample_count": len(s),
        "expected_samples": expected,
        "achieved_sample_fraction": (len(s) / expected) if expected else None,
        "achieved_sample_rate_hz": (len(s) / elapsed_s) if elapsed_s > 0 else None,
        "skipped_ticks": sampler.skipped_ticks,
        "counter_read_every_s": sampler.counters.period_s,
        "read_latency_us": read_latency_stats(s),
        "energy_counter_wrap_mj": str(sampler.backend.energy_wrap_mj),
        "csv_path": None if sampler.csv_path is None else str(sampler.csv_path),
        "csv_columns": csv_columns(sampler.gpu_ids),
        "csv_units": CSV_UNITS,
        "idle_power_w": None if idle is None else {str(k): v for k, v in idle.items()},
        "windows": {name: window_json(w) for name, w in meter.windows.items()},
        "static_dynamic_split": splits,
    }

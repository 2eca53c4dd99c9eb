"""A GPU's energy window cut into intervals, with each interval's joules: from NVML's energy counter
where the power CSV has it, else from the power readings.

A counter read stands for the energy up to the counter's last step (about every 100 ms), not up to the
read. The window's own boundaries are on steps (monitor.alignment), so a read's lag behind its step is
known at both ends of the window and interpolated between (the counter's and the sampler's clocks drift
slowly). Reads on every sample give every interval its exact joules. Reads far apart (the sampler reads
the counter every second or so on an H200, where a read costs 3.5 ms) give exact joules per span between
reads; each span is cut again at the other samples and its joules shared by the power readings, which
lag the work by a fraction of a second (`READING_LAGS_S`: the caller picks the lag that fits best).
Reads at every counter step (gaps of at most `DENSE_READ_GAP_S`) are used alone, even where the monitor
samples faster (20 ms): the readings' lag varies (75-125 ms fitted) and sharing 100 ms steps by them moved
the prefill of a mixed 2048 -> 256 run at 8 req/s from 15.6 to 0.34 mJ per prompt token
(results/h200/attribution/, prefill-only: 15.7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.counter_schedule import COUNTER_UPDATE_S
from monitor.csv_io import PowerCsv
from monitor.energy import GpuWindow

# How long a power reading may lag the work it reflects (s), tried where readings shape the split: on the
# 2 x H200 runs NVML's instant power fits the work best read 75-100 ms late (the counter's steps: 0);
# where the fit hardly changes with the lag (decode-dominated GPUs) the pick matters little.
READING_LAGS_S = (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15)
DENSE_READ_GAP_S = 1.5 * COUNTER_UPDATE_S  # counter reads this close (median gap) see every step


def sample_intervals(times_ns: np.ndarray, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's interval: midpoints between neighbouring samples, the first and last clipped to the
    window [start_ns, end_ns]."""
    mids = (times_ns[1:] + times_ns[:-1]) / 2.0
    left = np.concatenate([[start_ns], mids]).astype(float)
    right = np.concatenate([mids, [end_ns]]).astype(float)
    return left, right


@dataclass(frozen=True, slots=True)
class Intervals:
    """A GPU's window cut into intervals [left, right) (monotonic ns) and the joules of each; `source`
    says where the joules came from (`SOURCES`)."""

    left: np.ndarray
    right: np.ndarray
    joules: np.ndarray
    source: str

    @property
    def width_s(self) -> np.ndarray:
        return (self.right - self.left) / 1e9


SOURCES = {
    "counter": "energy counter differences between samples",
    "counter+instant": "energy counter between its reads, shared by instant power where it was not read",
    "instant": "power readings x their sample intervals, scaled to the counter",
}


def counter_steps(
    t: np.ndarray, start_ns: int, end_ns: int, period_s: float = COUNTER_UPDATE_S
) -> np.ndarray:
    """When the energy counter last stepped before each sample at `t` (a read stands for the energy up to
    then). The window's boundaries are on steps, so a sample's lag behind its step is known at the first
    and the last sample; between them it is interpolated (the counter's and the sampler's clocks drift
    slowly) and taken modulo the counter's update period."""
    period = period_s * 1e9
    lag0, lag1 = (t[0] - start_ns) % period, (t[-1] - end_ns) % period
    drift = (lag1 - lag0 + period / 2) % period - period / 2
    frac = (t - t[0]) / max(float(t[-1] - t[0]), 1.0)
    return np.clip(t - (lag0 + drift * frac) % period, start_ns, end_ns)


def _merge_missed_steps(bounds: np.ndarray, mj: np.ndarray) -> None:
    """Two neighbouring reads that saw the same counter value: one of them is off by a step (the step
    came late, or a read came early), and a neighbouring interval holds two steps' joules. The empty
    interval joins that neighbour (the one with more joules): it becomes zero-width (in place)."""
    steps = np.diff(mj)  # NaN where a side was not read
    for j in np.flatnonzero(steps == 0):
        before = steps[j - 1] if j > 0 else -np.inf
        after = steps[j + 1] if j + 1 < len(steps) else -np.inf
        if np.nan_to_num(after, nan=-np.inf) >= np.nan_to_num(before, nan=-np.inf):
            bounds[j + 1] = bounds[j]  # read j+1 was early: the next interval starts at read j
        else:
            bounds[j] = bounds[j + 1]  # read j was late: the previous interval ends at read j+1


def _line_integral(t: np.ndarray, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The integral (J) of the line through the readings `p` at `t` (flat beyond them), from x[0] to
    each of the sorted times `x` (ns)."""
    nodes = np.unique(np.concatenate([x, t]).astype(float))
    line = np.interp(nodes, t, p)
    area = np.concatenate([[0.0], np.cumsum((line[1:] + line[:-1]) / 2.0 * np.diff(nodes) / 1e9)])
    at = area[np.searchsorted(nodes, x)]
    return at - at[0]


def _steps_by_readings(
    steps: np.ndarray, mj: np.ndarray, start: int, end: int, t_p: np.ndarray, p: np.ndarray
) -> np.ndarray:
    """Reads far apart cannot tell from their neighbours whether one saw a step early or late (its read
    ran after the sample's stamp, or the step came late): each read's step is the one of the step
    before, at or after `steps` whose energy since the window's start best matches the readings'
    (scaled to the window's counter energy)."""
    period = COUNTER_UPDATE_S * 1e9
    cand = np.clip(steps[:, None] + period * np.array([-1.0, 0.0, 1.0]), start, end)
    grid = np.concatenate([[start], np.sort(cand.ravel()), [end]])
    area = _line_integral(t_p, p, grid)
    scale = (mj[-1] - mj[0]) / 1000.0 / area[-1] if area[-1] > 0 else 0.0
    modelled = np.interp(cand, grid, area) * scale
    pick = np.argmin(np.abs(modelled - (mj[1:-1, None] - mj[0]) / 1000.0), axis=1)
    return cand[np.arange(len(steps)), pick]


def counter_intervals(
    gpu: GpuWindow, t_read: np.ndarray, ctr: np.ndarray, t_cut: np.ndarray, t_p: np.ndarray, p: np.ndarray
) -> Intervals | None:
    """The window [start, end] cut at the counter steps its reads saw (`counter_steps` of the reads
    `ctr` at `t_read` inside it; the window's boundary reads at its ends), each span with the counter's
    joules. Where samples did not read the counter, a span is cut again at `t_cut` and its joules
    shared by the power readings `p` (at `t_p`: the integral of the line through them). None when the
    window's boundaries are not on counter steps or the counter went backwards (a wrap, or another
    driver session)."""
    if gpu.start_energy_mj is None or gpu.end_energy_mj is None or gpu.boundary_uncertainty_s is None:
        return None
    start, end = gpu.start_monotonic_ns, gpu.end_monotonic_ns
    assert start is not None and end is not None
    steps = counter_steps(t_read, start, end) if len(t_read) else np.zeros(0)
    mj = np.concatenate([[gpu.start_energy_mj], ctr, [gpu.end_energy_mj]]).astype(float)
    if np.any(np.diff(mj) < 0):
        return None
    if len(t_cut) and len(p) >= 2:  # reads far apart: which step each saw, from the readings
        steps = _steps_by_readings(steps, mj, start, end, t_p, p)
    stamps = np.maximum.accumulate(np.concatenate([[start], steps, [end]]).astype(float))
    _merge_missed_steps(stamps, mj)
    cuts = np.unique(np.concatenate([stamps, np.clip(t_cut, start, end).astype(float)]))
    width = np.diff(cuts)
    span = np.searchsorted(stamps, cuts[:-1], side="right") - 1  # the counter span each piece is in
    weight = np.diff(_line_integral(t_p, p, cuts)) if len(p) >= 2 else width.copy()
    per_span = np.bincount(span, weights=weight, minlength=len(mj) - 1)[span]
    span_width = np.bincount(span, weights=width, minlength=len(mj) - 1)[span]
    share = np.where(per_span > 0, weight / np.where(per_span > 0, per_span, 1.0), width / span_width)
    joules = np.diff(mj)[span] / 1000.0 * share
    keep = width > 0
    source = "counter" if len(t_cut) == 0 else "counter+instant"
    return Intervals(cuts[:-1][keep], cuts[1:][keep], joules[keep], source)


def power_intervals(gpu: GpuWindow, power: PowerCsv, column: str, lag_s: float = 0.0) -> Intervals:
    """The window's intervals and their joules: from the energy counter when the CSV has it
    (`counter_intervals`), else each power sample's reading x its interval (`sample_intervals`). A
    power reading stands for the power `lag_s` before it was taken (it lags the work)."""
    assert gpu.start_monotonic_ns is not None and gpu.end_monotonic_ns is not None
    start, end = gpu.start_monotonic_ns, gpu.end_monotonic_ns
    t_all = power.columns.get("monotonic_ns")
    p_all = power.gpu(gpu.index, column)
    if t_all is None or p_all is None:
        raise ValueError(f"{power.path} has no monotonic_ns or gpu_{gpu.index}_{column} column")
    t_p = t_all - lag_s * 1e9
    inside = (t_all >= start) & (t_all <= end)
    ctr = power.gpu(gpu.index, "energy_mj")
    ok = np.isfinite(p_all)
    if ctr is not None:
        read = inside & np.isfinite(ctr)
        t_read = t_all[read]
        dense = len(t_read) >= 2 and float(np.median(np.diff(t_read))) <= DENSE_READ_GAP_S * 1e9
        cut = (t_p > start) & (t_p < end) & ~np.isfinite(ctr) & ok & (not dense)
        iv = counter_intervals(gpu, t_read, ctr[read], t_p[cut], t_p[ok], p_all[ok])
        if iv is not None and len(iv.joules) >= 2:
            return iv
    keep = (t_p >= start) & (t_p <= end) & ok
    t, p = t_p[keep], p_all[keep]
    if len(t) < 2:
        raise ValueError(f"{power.path} has under 2 power samples of GPU {gpu.index} in the window")
    left, right = sample_intervals(t, start, end)
    return Intervals(left, right, p * (right - left) / 1e9, "instant")

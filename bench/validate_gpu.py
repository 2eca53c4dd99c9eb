"""Validate NVML energy accounting on a GPU host (read-only: never sets anything on the GPU).

Run it while a real load (e.g. vLLM serving) keeps the GPUs busy:
    python -m bench.validate_gpu --backend nvml --gpu-ids 0,1 --seconds 60 --json validate.json
Per GPU it compares the energy counter's delta with the integral of sampled instant power and of
nvmlDeviceGetPowerUsage over the same interval (target: |difference| < 2%), checks the achieved sample
fraction (target >= 95%), and records NVML read latency per field, GPU name, driver, clocks, power limit.
`--backend sim` runs the same checks on the simulator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a file: python monitor/<script>.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.backends import GpuBackend, MonitorUnavailable, open_backend_for
from monitor.energy import window_json
from monitor.power_monitor import PowerMonitor

TARGET_DIFF_PERCENT = 2.0
TARGET_SAMPLE_FRACTION = 0.95


def _pct(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(100 * (value - reference) / reference, 3)


def _observed(values: np.ndarray) -> dict[str, Any]:
    ok = values[~np.isnan(values)]
    if len(ok) == 0:
        return {"mean": None, "min": None, "max": None}
    return {"mean": round(float(ok.mean()), 1), "min": float(ok.min()), "max": float(ok.max())}


def update_periods(
    backend: GpuBackend, gpu: int, seconds: float = 1.0, poll_s: float = 0.001
) -> dict[str, Any]:
    """How often the energy counter and the instant power actually change (median/min/max ms between
    changes), from polling both every `poll_s` for `seconds`."""
    changes: dict[str, list[int]] = {"energy_counter": [], "power_instant": []}
    last: dict[str, int | None] = dict.fromkeys(changes)
    reads = {"energy_counter": backend.total_energy_mj, "power_instant": backend.power_instant_mw}
    clock = backend.clock
    end = clock.monotonic_ns() + int(seconds * 1e9)
    while (now := clock.monotonic_ns()) < end:
        for name, read in reads.items():
            try:
                value = read(gpu)
            except Exception:  # unsupported or failing: reported as no changes
                continue
            if last[name] is not None and value != last[name]:
                changes[name].append(now)
            last[name] = value
        clock.sleep(poll_s)
    out: dict[str, Any] = {}
    for name, times in changes.items():
        gaps = np.diff(times) / 1e6
        if len(gaps) == 0:
            out[name] = {"changes": len(times), "median_ms": None, "min_ms": None, "max_ms": None}
            continue
        out[name] = {
            "changes": len(times),
            "median_ms": round(float(np.median(gaps)), 2),
            "min_ms": round(float(gaps.min()), 2),
            "max_ms": round(float(gaps.max()), 2),
        }
    return out


def validate(
    mon: PowerMonitor, seconds: float, warmup_s: float = 2.0, probe_s: float = 1.0, progress: bool = True
) -> dict[str, Any]:
    """Sample for `seconds` inside one energy window and compare the energy estimates per GPU
    (after `probe_s` per GPU measuring how often the counter and instant power update)."""
    clock = mon.clock  # the system's; a simulated backend's virtual one in tests

    def left_s() -> float:
        return (deadline_ns - clock.monotonic_ns()) / 1e9

    periods = {gpu: update_periods(mon.backend, gpu, probe_s) for gpu in mon.gpu_ids}
    mon.start()
    clock.sleep(warmup_s)  # the 1 s trailing power average needs history before the window opens
    mon.begin_window("validate")
    deadline_ns = clock.monotonic_ns() + round(seconds * 1e9)
    while left_s() > 0:
        clock.sleep(min(10.0, left_s()))
        if progress and left_s() > 0:
            print(f"  ... {left_s():.0f} s left", file=sys.stderr)
    window = mon.end_window("validate")
    clock.sleep(3 * mon.interval_s)  # samples just past the end bracket the interval for interpolation
    mon.stop()
    summary = mon.to_json()
    gpus: dict[str, Any] = {}
    for g, gpu in enumerate(mon.gpu_ids):
        w = window.gpus[gpu]
        a, b = w.start_monotonic_ns, w.end_monotonic_ns
        instant = mon.integrate_power_j(gpu, a, b, "power_instant_mw")
        usage = mon.integrate_power_j(gpu, a, b, "power_mw")
        average = mon.integrate_power_j(gpu, a, b, "power_average_mw")
        fraction = min(1.0, w.sample_count / w.expected_samples) if w.expected_samples else None
        diff_instant = _pct(instant, w.energy_j)
        s = mon.samples(a, b)
        throttle = s.value(g, "throttle_reasons")
        static = summary["gpus"][str(gpu)]
        gpus[str(gpu)] = {
            "name": static["name"],
            "power_limit_w": static["power_limit_w"],
            "clocks_at_start_mhz": {k: static[f"{k}_clock_mhz"] for k in ("graphics", "sm", "mem")},
            "sm_clock_mhz": _observed(s.value(g, "sm_clock_mhz")),
            "mem_clock_mhz": _observed(s.value(g, "mem_clock_mhz")),
            "gpu_util_pct": _observed(s.value(g, "gpu_util_pct")),
            "temperature_c": _observed(s.value(g, "temperature_c")),
            "throttle_reasons_seen": int(np.bitwise_or.reduce(throttle[~np.isnan(throttle)].astype(np.int64)))
            if np.any(~np.isnan(throttle))
            else None,
            "update_period_ms": periods[gpu],
            "window": window_json(w),
            "counter_energy_j": w.energy_j,
            "method": w.method,
            "integrated_instant_energy_j": instant,
            "integrated_power_usage_energy_j": usage,
            "integrated_power_average_energy_j": average,
            "diff_instant_vs_counter_percent": diff_instant,
            "diff_power_usage_vs_counter_percent": _pct(usage, w.energy_j),
            "diff_power_average_vs_counter_percent": _pct(average, w.energy_j),
            "sample_fraction": fraction,
            "pass_energy": diff_instant is not None and abs(diff_instant) < TARGET_DIFF_PERCENT,
            "pass_samples": fraction is not None and fraction >= TARGET_SAMPLE_FRACTION,
        }
    return {
        "backend": summary["backend"],
        "driver_version": summary["driver_version"],
        "interval_s": mon.interval_s,
        "seconds": seconds,
        "targets": {"energy_diff_percent": TARGET_DIFF_PERCENT, "sample_fraction": TARGET_SAMPLE_FRACTION},
        "gpus": gpus,
        "read_latency_us": summary["read_latency_us"],
        "monitor": summary,
        "passed": all(x["pass_energy"] and x["pass_samples"] for x in gpus.values()),
    }


def print_report(r: dict[str, Any]) -> None:
    def f(x: float | None, fmt: str = ".1f") -> str:
        return "n/a" if x is None else format(x, fmt)

    print(f"backend {r['backend']}, driver {r['driver_version']}, interval {r['interval_s']} s")
    for gpu, x in r["gpus"].items():
        clocks = x["clocks_at_start_mhz"]
        print(
            f"GPU {gpu}: {x['name']}, power limit {f(x['power_limit_w'])} W, clocks at start (MHz) {clocks}"
        )
        instant, usage = x["integrated_instant_energy_j"], x["integrated_power_usage_energy_j"]
        print(
            f"  counter {f(x['counter_energy_j'])} J ({x['method']}); "
            f"instant {f(instant)} J ({f(x['diff_instant_vs_counter_percent'], '+.2f')}%); "
            f"power usage {f(usage)} J ({f(x['diff_power_usage_vs_counter_percent'], '+.2f')}%)"
        )
        print(
            f"  samples {f(x['sample_fraction'], '.3f')} of expected; energy "
            f"{'PASS' if x['pass_energy'] else 'FAIL'} (<{TARGET_DIFF_PERCENT}%), samples "
            f"{'PASS' if x['pass_samples'] else 'FAIL'} (>={TARGET_SAMPLE_FRACTION:.0%}); "
            f"util mean {x['gpu_util_pct']['mean']}%, SM clock mean {x['sm_clock_mhz']['mean']} MHz"
        )
        periods = x["update_period_ms"]
        print(
            f"  updates every (median ms): energy counter {periods['energy_counter']['median_ms']}, "
            f"instant power {periods['power_instant']['median_ms']}; window boundary uncertainty "
            f"{f(x['window']['boundary_uncertainty_s'], '.4f')} s"
        )
    print("NVML read latency (us):")
    for name, st in r["read_latency_us"].items():
        if st["n"]:
            print(f"  {name:<17} mean {st['mean_us']:>8} p50 {st['p50_us']:>8} p99 {st['p99_us']:>8}")
        else:
            print(f"  {name:<17} not read / unsupported")
    print("PASSED" if r["passed"] else "NOT PASSED (see above)")


def main(argv: list[str] | None = None) -> int:
    from testbed.cli_errors import OneLineErrorParser

    p = OneLineErrorParser(prog="python -m bench.validate_gpu", description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("auto", "nvml", "sim"), default="auto")
    p.add_argument("--gpu-ids", default="0,1", help="NVML indices (default 0,1)")
    p.add_argument("--interval", type=float, default=0.1, help="sampling interval in s (default 0.1)")
    p.add_argument("--seconds", type=float, default=30.0, help="window length in s (>= 30 recommended)")
    p.add_argument("--warmup", type=float, default=2.0, help="sampling before the window opens (default 2 s)")
    p.add_argument("--probe", type=float, default=1.0, help="s per GPU measuring update periods (default 1)")
    p.add_argument("--json", type=Path, default=Path("validate_gpu.json"), help="output JSON path")
    p.add_argument("--csv", type=Path, default=None, help="also stream the samples to this CSV")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    try:
        gpu_ids = [int(x) for x in args.gpu_ids.split(",")]
    except ValueError:
        print("error: --gpu-ids takes comma separated integers, e.g. 0,1", file=sys.stderr)
        return 2
    if args.seconds <= 0:
        print("error: --seconds must be > 0", file=sys.stderr)
        return 2
    try:
        backend = open_backend_for(args.backend, gpu_ids)
    except MonitorUnavailable as err:
        print(f"error: {err.reason}", file=sys.stderr)
        return 2
    try:
        mon = PowerMonitor(gpu_ids, args.interval, backend, csv_path=args.csv)
        result = validate(mon, args.seconds, args.warmup, args.probe)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        backend.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_report(result)
    print(f"wrote {args.json}")
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())

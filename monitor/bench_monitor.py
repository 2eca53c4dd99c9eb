"""Benchmark of the power sampler: CPU cost, achieved sample rate, NVML read latency per field.

python -m monitor.bench_monitor --backend sim --seconds 10            # here (no GPU)
python -m monitor.bench_monitor --backend nvml --seconds 30 --csv     # on the GPU host

With --backend sim the "NVML" reads are the simulator's Python code, so CPU cost and latencies are an
upper bound of the sampler's own overhead, not NVML's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python monitor/<script>.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.backends import GpuBackend, MonitorUnavailable, open_backend_for
from monitor.power_monitor import PowerMonitor


def bench_one(
    backend: GpuBackend, gpu_ids: list[int], interval_s: float, seconds: float, csv_dir: Path | None
) -> dict[str, Any]:
    """Sample for `seconds` and return CPU %, sample fraction and latency stats."""
    csv_path = None if csv_dir is None else csv_dir / f"bench_{interval_s}.csv"
    mon = PowerMonitor(gpu_ids, interval_s, backend, csv_path=csv_path)
    cpu0, wall0 = time.process_time(), time.monotonic()
    mon.start()
    time.sleep(seconds)
    mon.stop()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    summary = mon.to_json()
    n = summary["sample_count"]
    return {
        "interval_s": interval_s,
        "gpus": len(gpu_ids),
        "csv": csv_path is not None,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 4),
        "cpu_percent": round(100 * cpu / wall, 3),
        "cpu_us_per_sample": round(1e6 * cpu / n, 1) if n else None,
        "samples": n,
        "expected_samples": summary["expected_samples"],
        "achieved_sample_percent": round(100 * summary["achieved_sample_fraction"], 2),
        "achieved_rate_hz": round(summary["achieved_sample_rate_hz"], 2),
        "skipped_ticks": summary["skipped_ticks"],
        "read_latency_us": summary["read_latency_us"],
    }


def print_result(r: dict[str, Any]) -> None:
    print(
        f"\ninterval {r['interval_s'] * 1000:.0f} ms, {r['gpus']} GPUs, csv={r['csv']}: "
        f"CPU {r['cpu_percent']:.2f}% ({r['cpu_us_per_sample']} us/sample), "
        f"samples {r['samples']}/{r['expected_samples']} ({r['achieved_sample_percent']:.1f}%), "
        f"{r['achieved_rate_hz']:.1f} Hz, skipped ticks {r['skipped_ticks']}"
    )
    print(f"  {'read':<17}{'n':>7}{'mean us':>10}{'p50 us':>10}{'p99 us':>10}{'max us':>10}")
    for name, st in r["read_latency_us"].items():
        if st["n"]:
            stats = "".join(f"{st[k]:>10}" for k in ("mean_us", "p50_us", "p99_us", "max_us"))
            print(f"  {name:<17}{st['n']:>7}{stats}")
        else:
            print(f"  {name:<17}{0:>7}  (not read or unsupported)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitor.bench_monitor", description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("auto", "nvml", "sim"), default="sim")
    p.add_argument("--gpu-ids", default="0,1", help="NVML indices (default 0,1)")
    p.add_argument("--intervals", default="0.1,0.01", help="sampling intervals in s (default 0.1,0.01)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per interval (default 10)")
    p.add_argument("--csv", action="store_true", help="also stream the CSV (to a temporary directory)")
    p.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = p.parse_args(argv)
    try:
        gpu_ids = [int(x) for x in args.gpu_ids.split(",")]
        intervals = [float(x) for x in args.intervals.split(",")]
    except ValueError:
        print(
            "error: --gpu-ids and --intervals take comma separated numbers, e.g. 0,1 and 0.1,0.01",
            file=sys.stderr,
        )
        return 2
    try:
        backend = open_backend_for(args.backend, gpu_ids)
    except MonitorUnavailable as err:
        print(f"error: {err.reason}", file=sys.stderr)
        return 2
    print(f"backend {backend.name}, driver {backend.driver_version()}, GPUs {gpu_ids}, {args.seconds} s each")
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for interval in intervals:
                r = bench_one(backend, gpu_ids, interval, args.seconds, Path(tmp) if args.csv else None)
                print_result(r)
                results.append(r)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        backend.close()
    if args.json is not None:
        args.json.write_text(json.dumps({"backend": backend.name, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

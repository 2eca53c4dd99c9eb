"""Benchmark of the power sampler: CPU share of a core, power samples achieved, counter vs integrated energy.

python -m bench.bench_monitor --backend sim --seconds 10            # here (no GPU)
python -m bench.bench_monitor --backend nvml --seconds 30 --csv     # on the GPU host

Per interval it samples for --seconds inside one energy window and prints: the sampling thread's CPU
time as a share of one core, the share of power samples that arrived, how often and at what cost the
energy counter was read, and per GPU the window's counter energy against the integral of the sampled
instant power. With --backend sim the other "NVML" reads are the simulator's Python code (an upper
bound of the sampler's own overhead), while the energy counter read costs what it does on an H200
(--sim-energy-read-ms, busy CPU), which is what dominates the sampler's cost there.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python monitor/<script>.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.backends import GpuBackend, MonitorUnavailable, open_backend
from monitor.fields import READ_NAMES
from monitor.power_monitor import PowerMonitor
from monitor.simulated import H200_ENERGY_READ_S

WARMUP_S = 0.3


def bench_one(
    backend: GpuBackend,
    gpu_ids: list[int],
    interval_s: float,
    seconds: float,
    csv_dir: Path | None,
    counter_every_s: float | None = None,
) -> dict[str, Any]:
    """Sample for `seconds` inside one window; return CPU share, sample share, counter reads, energies."""
    csv_path = None if csv_dir is None else csv_dir / f"bench_{interval_s}.csv"
    mon = PowerMonitor(gpu_ids, interval_s, backend, csv_path=csv_path, counter_read_every_s=counter_every_s)
    mon.start()
    time.sleep(WARMUP_S)
    mon.begin_window("bench")
    cpu0, main0, t0 = time.process_time(), time.thread_time(), time.monotonic_ns()
    time.sleep(seconds)
    cpu1, main1, t1 = time.process_time(), time.thread_time(), time.monotonic_ns()
    window = mon.end_window("bench")
    time.sleep(3 * interval_s)  # samples past the end bracket the window for the integral
    mon.stop()
    summary = mon.to_json()
    span_s = (t1 - t0) / 1e9
    sampler_cpu_s = (cpu1 - cpu0) - (main1 - main0)  # the main thread slept; the rest is the sampler's
    s = mon.samples(t0, t1)
    # Ticks from the span's first to its last sample: the share that arrived is exact, not off by one.
    expected = round((s.monotonic_ns[-1] - s.monotonic_ns[0]) / 1e9 / interval_s) + 1 if len(s) else 1
    energy_lat_ns = s.latency_ns[:, :, READ_NAMES.index("energy")]
    counter_reads = energy_lat_ns[energy_lat_ns >= 0]
    gpus = {}
    for gpu, w in window.gpus.items():
        integrated = mon.integrate_power_j(gpu, w.start_monotonic_ns, w.end_monotonic_ns)
        diff = None if integrated is None or not w.energy_j else 100 * (integrated - w.energy_j) / w.energy_j
        gpus[str(gpu)] = {
            "counter_energy_j": w.energy_j,
            "method": w.method,
            "integrated_instant_energy_j": integrated,
            "diff_percent": None if diff is None else round(diff, 3),
            "window_s": round(w.duration_s, 3),
        }
    return {
        "interval_s": interval_s,
        "gpus": len(gpu_ids),
        "csv": csv_path is not None,
        "wall_s": round(span_s, 3),
        "cpu_s": round(sampler_cpu_s, 4),
        "cpu_percent": round(100 * sampler_cpu_s / span_s, 3),
        "cpu_us_per_sample": round(1e6 * sampler_cpu_s / len(s), 1) if len(s) else None,
        "samples": len(s),
        "expected_samples": expected,
        "achieved_sample_percent": round(100 * len(s) / expected, 2),
        "skipped_ticks": summary["skipped_ticks"],
        "counter_read_every_s": summary["counter_read_every_s"],
        "counter_reads": len(counter_reads),
        "counter_read_mean_us": round(float(counter_reads.mean()) / 1000, 1) if len(counter_reads) else None,
        "counter_read_time_percent": round(100 * float(counter_reads.sum()) / 1e9 / span_s, 3),
        "energy": gpus,
        "read_latency_us": summary["read_latency_us"],
    }


def print_result(r: dict[str, Any]) -> None:
    each = "n/a" if r["counter_read_mean_us"] is None else f"{r['counter_read_mean_us']} us"
    print(
        f"\ninterval {r['interval_s'] * 1000:.0f} ms, {r['gpus']} GPUs, csv={r['csv']}, "
        f"{r['wall_s']:.1f} s:\n"
        f"  sampler CPU {r['cpu_percent']:.2f}% of a core ({r['cpu_us_per_sample']} us/sample)\n"
        f"  power samples {r['samples']}/{r['expected_samples']} ({r['achieved_sample_percent']:.1f}%), "
        f"skipped ticks {r['skipped_ticks']}\n"
        f"  energy counter read every {r['counter_read_every_s']:.2f} s by the sampler: {r['counter_reads']} "
        f"reads, {each} each, {r['counter_read_time_percent']:.2f}% of the time"
    )
    for gpu, e in r["energy"].items():
        integrated, diff = e["integrated_instant_energy_j"], e["diff_percent"]
        print(
            f"  GPU {gpu}: counter {e['counter_energy_j']:.1f} J over {e['window_s']:.3f} s ({e['method']}), "
            f"integrated instant power {'n/a' if integrated is None else f'{integrated:.1f} J'} "
            f"({'n/a' if diff is None else f'{diff:+.2f}%'})"
        )
    print(f"  {'read':<17}{'n':>7}{'mean us':>10}{'p50 us':>10}{'p99 us':>10}{'max us':>10}")
    for name, st in r["read_latency_us"].items():
        if st["n"]:
            stats = "".join(f"{st[k]:>10}" for k in ("mean_us", "p50_us", "p99_us", "max_us"))
            print(f"  {name:<17}{st['n']:>7}{stats}")
        else:
            print(f"  {name:<17}{0:>7}  (not read or unsupported)")


def main(argv: list[str] | None = None) -> int:
    from testbed.cli_errors import OneLineErrorParser

    p = OneLineErrorParser(prog="python -m bench.bench_monitor", description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("auto", "nvml", "sim"), default="sim")
    p.add_argument("--gpu-ids", default="0,1", help="NVML indices (default 0,1)")
    p.add_argument("--intervals", default="0.1,0.01", help="sampling intervals in s (default 0.1,0.01)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per interval (default 10)")
    p.add_argument(
        "--counter-every",
        type=float,
        default=None,
        help="s between the sampler's energy counter reads (default: the monitor's, sized to its cost)",
    )
    p.add_argument(
        "--sim-energy-read-ms",
        type=float,
        default=H200_ENERGY_READ_S * 1000,
        help="CPU ms one simulated energy counter read costs (default: an H200's)",
    )
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
        if args.backend == "sim":
            cost_s = args.sim_energy_read_ms / 1000
            backend = open_backend("sim", n_gpus=max(gpu_ids) + 1, energy_read_cost_s=cost_s)
        else:
            backend = open_backend(args.backend)
    except MonitorUnavailable as err:
        print(f"error: {err.reason}", file=sys.stderr)
        return 2
    print(f"backend {backend.name}, driver {backend.driver_version()}, GPUs {gpu_ids}, {args.seconds} s each")
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for interval in intervals:
                csv_dir = Path(tmp) if args.csv else None
                r = bench_one(backend, gpu_ids, interval, args.seconds, csv_dir, args.counter_every)
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

"""`python -m monitor`: sample GPU power to CSV (and a JSON summary) until --duration or Ctrl-C/SIGTERM.

Example: python -m monitor --gpu-ids 0,1 --interval 0.1 --output power.csv --json power.json --duration 60
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from monitor.backends import MonitorUnavailable, open_backend
from monitor.energy import WindowResult
from monitor.power_monitor import MIN_INTERVAL_S, PowerMonitor
from testbed.cli_errors import OneLineErrorParser, arg_type, parse_gpu_ids
from testbed.files import atomic_write

RUN_WINDOW = "run"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="python -m monitor", description=__doc__.splitlines()[0])
    p.add_argument(
        "--gpu-ids", type=arg_type(parse_gpu_ids), default=None, help="NVML indices, e.g. 0,1 (default: all)"
    )
    p.add_argument(
        "--interval", type=float, default=0.1, help=f"seconds between samples (>= {MIN_INTERVAL_S})"
    )
    p.add_argument("--output", type=Path, default=Path("power.csv"), help="CSV path (default power.csv)")
    p.add_argument("--json", type=Path, default=None, help="JSON summary path (default: CSV path with .json)")
    p.add_argument("--duration", type=float, default=None, help="seconds to sample (default: until Ctrl-C)")
    p.add_argument("--backend", choices=("auto", "nvml", "sim"), default="auto", help="telemetry backend")
    p.add_argument(
        "--counter-every",
        type=float,
        default=None,
        help="s between the sampler's own energy counter reads (>= 0.1; default: sized to what a read costs)",
    )
    p.add_argument("--timeline-points", type=int, default=500, help="points of the power timeline in JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def window_text(window: WindowResult) -> str:
    """The run's energy per GPU and the interval each covers (`python -m monitor.plot --report` prints
    the same lines from the JSON)."""
    lines = [f'monitor: window "{window.name}", each GPU from one energy-counter step to another:']
    lines += [f"  GPU {gpu}: {g.describe()}" for gpu, g in window.gpus.items()]
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file, then rename) so readers never see half a file."""
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s %(message)s"
    )
    json_path: Path = args.json or args.output.with_suffix(".json")
    if args.gpu_ids == []:
        print(
            "error: --gpu-ids is empty: give indices, e.g. 0,1, or leave it out for every GPU",
            file=sys.stderr,
        )
        return 2
    if args.duration is not None and args.duration <= 0:
        print("error: --duration must be > 0 seconds (omit it to sample until Ctrl-C)", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        if args.backend == "sim":
            backend = open_backend("sim", n_gpus=max(args.gpu_ids or [1]) + 1)
        else:
            backend = open_backend(args.backend)
    except MonitorUnavailable as err:
        print(f"error: {err.reason}", file=sys.stderr)
        return 2
    try:
        gpu_ids = args.gpu_ids if args.gpu_ids is not None else list(range(backend.device_count()))
        mon = PowerMonitor(
            gpu_ids, args.interval, backend, csv_path=args.output, counter_read_every_s=args.counter_every
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        backend.close()
        return 2

    try:
        mon.start()
    except OSError as err:
        print(f"error: cannot write {args.output}: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        until = f"for {args.duration} s" if args.duration else "until Ctrl-C"
        print(f"monitor: {backend.name} GPUs {gpu_ids} every {args.interval} s -> {args.output} {until}",
              file=sys.stderr)  # fmt: skip
    try:
        mon.begin_window(RUN_WINDOW)
        stop.wait(args.duration)
        window = mon.end_window(RUN_WINDOW)
    finally:
        mon.stop()
        summary = mon.to_json()
        summary["timeline"] = mon.timeline(args.timeline_points)
        write_json(json_path, summary)
        backend.close()
    if not args.quiet:
        print(
            f"monitor: {summary['sample_count']} samples in {summary['duration_s']:.1f} s; "
            f"wrote {args.output} and {json_path}\n{window_text(window)}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

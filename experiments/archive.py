"""`python -m experiments.archive RUN_DIR...`: compress complete runs for keeping in git.

Each run's result.json becomes result.json.xz (about 5x smaller; its records are inside) and its
requests.jsonl, a copy of those records, is dropped; its power CSVs (power.csv, a cluster's
power-<node>.csv) become power*.csv.xz (about 7x smaller). Loaders, the attribution and the analysis
read archives as they are.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.schema import archive_run
from monitor.csv_io import archive_power_csv
from testbed.cli_errors import OneLineErrorParser


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(prog="python -m experiments.archive", description=__doc__)
    p.add_argument("run_dirs", nargs="+", help="run directories holding a complete result.json")
    args = p.parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        try:
            print(f"{run_dir}: {archive_run(run_dir)}")
            for csv_path in sorted(Path(run_dir).glob("power*.csv")):
                print(f"{run_dir}: {archive_power_csv(csv_path)}")
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())

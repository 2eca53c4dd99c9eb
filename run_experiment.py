#!/usr/bin/env python3
"""`python run_experiment.py ...`, the design card's command: the same as `testbed run ...`.

A shim: the runner's command line is experiments/run_cli.py (`--help` there explains every flag).
"""

from __future__ import annotations

import sys

from experiments.run_cli import main

if __name__ == "__main__":
    sys.exit(main())

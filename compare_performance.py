#!/usr/bin/env python3
"""`python compare_performance.py ...`, the design card's command: the same as `testbed compare ...`.

A shim: the comparison's command line is analysis/compare_cli.py (`--help` there explains every flag).
"""

from __future__ import annotations

import sys

from analysis.compare_cli import main

if __name__ == "__main__":
    sys.exit(main())

"""The one-line error parser, re-exported where the experiments side has always imported it from.

The class lives in testbed/cli_errors.py, at the bottom of the import graph, so that every CLI (the
proxy, the monitor and the fake upstream included, which import nothing of experiments) uses it.
"""

from __future__ import annotations

from testbed.cli_errors import OneLineErrorParser

__all__ = ["OneLineErrorParser"]

"""`python -m testbed COMMAND ...`: the `testbed` entry point without installing it (testbed/cli.py)."""

from __future__ import annotations

import sys

from testbed.cli import main

sys.exit(main())

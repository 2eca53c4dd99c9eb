"""`python -m proxy ...`: see proxy/cli.py."""

from __future__ import annotations

import sys

from proxy.cli import main

sys.exit(main())

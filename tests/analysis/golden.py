"""The golden results (tests/golden/, written by tests/golden/make_golden.py) and helpers to run the CLI
and derive new runs from them.

The runs record their serving setups: ONE ("1 instance") and PD ("1P1D p2p_nccl GET"), their labels.
Each golden run holds 3 measured requests, all with 4 output tokens, sent at t = 0, 1 and 2 s:
  traditional: TTFT 100/200/300 ms, gaps 30 ms (the last request 30, 30, 140 ms), last token at 2.5 s;
               GPU 0 serving 300 J, GPU 1 idle 50 J over 2.5 s, idle power 40 W and 20 W.
  disagg:      TTFT 50/60/400 ms, gaps 20 ms (the last request 20, 20, 60 ms), last token at 2.5 s;
               GPU 0 prefill 150 J, GPU 1 decode 180 J; stages (prefill, decode first chunk, proxy
               overhead) 30/15/3, 35/20/3, 300/90/5 ms.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from experiments.schema import RunResult

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
TRAD, DIS = GOLDEN / "traditional", GOLDEN / "disagg"
OTHER, CRASHED = GOLDEN / "other_model", GOLDEN / "incomplete_disagg"
SWEEP = [GOLDEN / "sweep" / f"rate{r}" for r in (1, 2, 4)]
ONE, PD = "1 instance", "1P1D p2p_nccl GET"


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    """compare_performance.py as a user runs it."""
    return subprocess.run(
        [sys.executable, "compare_performance.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def derived_run(src: Path, dst: Path, change: Callable[[RunResult], None]) -> Path:
    """A new run directory: src's result loaded, changed in place, saved to dst."""
    result = RunResult.load(src)
    change(result)
    result.save(dst)
    return dst

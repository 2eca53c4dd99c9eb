"""Every command line of the house, not only those `testbed` wraps, answers bad input with one line:
`error: ...` on stderr, exit status 2 (testbed.cli_errors.OneLineErrorParser)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
# The CLIs outside `testbed`'s commands: tools, benches and helpers run as `python -m MODULE`.
OTHER_CLIS = (
    "analysis.server_report",
    "experiments.attribution",
    "fake_upstream.__main__",
    "monitor.plot",
    "bench.bench_client",
    "bench.bench_frontier",
    "bench.bench_monitor",
    "bench.bench_planner",
    "bench.bench_proxy",
    "bench.soak",
    "bench.validate_gpu",
)
SOURCE_DIRS = ("analysis", "bench", "demo", "disagg", "experiments", "fake_upstream", "launch", "monitor",
               "planner", "proxy", "testbed", "traditional")  # fmt: skip


def test_every_module_that_parses_arguments_is_checked() -> None:
    """A new CLI gets its one-line-error check here or in tests/testbed/test_cli.py (a testbed command)."""
    parsing = set()
    for top in SOURCE_DIRS:
        for path in (REPO / top).rglob("*.py"):
            if "parse_args(" in path.read_text():
                parsing.add(".".join(path.relative_to(REPO).with_suffix("").parts))
    checked = {c.target.partition(":")[0] for c in COMMANDS} | set(OTHER_CLIS)
    assert parsing - checked == set()


@pytest.mark.parametrize("module", OTHER_CLIS)
def test_bad_input_is_one_line_and_exit_2(module: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    name = module.removesuffix(".__main__")
    proc = subprocess.run(
        [sys.executable, "-m", name, "--no-such-flag"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(f"(see python -m {name} --help)"), line

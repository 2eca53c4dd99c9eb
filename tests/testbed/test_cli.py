"""`testbed COMMAND ...`, the one entry point: what pyproject's script names, the commands it lists, and
the one-line error every command gives for bad input (run as a user runs them, in a subprocess)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from launch.supervise import STOP_REQUEST
from testbed.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]
# The commands and the modules they are, as the README and the design card name them (by hand, not
# read from testbed.cli: the table must keep saying this).
EXPECTED = {
    "run": "run_experiment.py",
    "compare": "compare_performance.py",
    "disagg": "start_disaggregated_servers.sh",
    "traditional": "python -m traditional",
    "stop": "stop",
    "proxy": "python -m proxy",
    "monitor": "python -m monitor",
    "plan": "python -m planner",
    "campaign": "python -m disagg.campaigns.frontier",
    "archive": "python -m experiments.archive",
    "demo": "python -m demo",
}


def entry(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`testbed ARGS` through the function pyproject's script names (python -m testbed calls it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "testbed", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_script_pyproject_installs_is_this_main() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    module, _, function = project["project"]["scripts"]["testbed"].partition(":")
    assert getattr(importlib.import_module(module), function) is main
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "testbed*" in include
    for command in COMMANDS:  # every command's module is in a package the install includes
        top = command.target.split(".")[0]
        assert f"{top}*" in include, command


def test_help_lists_every_command_on_one_line() -> None:
    proc = entry("--help")
    assert proc.returncode == 0, proc.stderr
    listed = {}
    for line in proc.stdout.splitlines():
        words = line.split()
        if line.startswith("  ") and not line.startswith("  testbed") and words:
            listed[words[0]] = line
    assert list(listed) == list(EXPECTED)
    for name, same_as in EXPECTED.items():
        assert any(f"testbed {name}" in line and same_as in line for line in proc.stdout.splitlines()), name


def test_every_command_runs_its_module_s_main() -> None:
    for command in COMMANDS:
        assert callable(command.load()), command.target


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bad_input_to_every_command_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    # stop takes one RUN_DIR: two are bad input (and nothing is stopped)
    args = ["a", "b"] if name == "stop" else ["--no-such-flag"]
    proc = entry(name, *args, cwd=tmp_path if name == "stop" else REPO)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: name a command: run, compare, disagg,"),
        (["bench"], "error: unknown command 'bench'; choose one of run, compare,"),
        (["run", "--rate", "x"], "error: argument --rate/--request-rate: 'x' is not a number"),
        (["compare", "--attainment", "3"], "error: argument --attainment: 3 is not a share in (0, 1]"),
    ],
)
def test_the_entry_point_s_own_errors_and_its_commands_name_it(args: list[str], message: str) -> None:
    proc = entry(*args)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(message), line
    if args[1:]:  # the wrapped parser points at `testbed COMMAND --help`
        assert line.endswith(f"(see testbed {args[0]} --help)"), line


def test_run_through_the_entry_point_is_the_runner() -> None:
    flags = ["--endpoint", "http://127.0.0.1:9", "--input-len", "16", "--output-len", "4"]
    flags += ["--num-requests", "3", "--rate", "2", "--dry-run"]
    via_entry, via_shim = (
        entry("run", *flags),
        subprocess.run(
            [sys.executable, "run_experiment.py", *flags],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        ),
    )
    assert via_entry.returncode == via_shim.returncode == 0, via_entry.stderr + via_shim.stderr
    assert via_entry.stdout == via_shim.stdout
    assert via_entry.stdout.startswith("run_experiment: traditional at http://127.0.0.1:9\n")
    assert "3 requests (+2 warm-up), seed 0" in via_entry.stdout


def test_stop_without_a_run_dir_stops_the_run_started_last(tmp_path: Path) -> None:
    runs = tmp_path / "results" / "runs"
    older, newer = runs / "20260101-000000-traditional", runs / "20260101-000100-disagg"
    for d in (older, newer):
        d.mkdir(parents=True)
    (runs / ".current-disagg").write_text(str(newer))
    (runs / ".current-traditional").write_text(str(older))
    os.utime(runs / ".current-traditional", ns=(1, 1))  # written long before the disagg pointer
    proc = entry("stop", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "stopped: nothing (no pid files left)"
    assert (newer / STOP_REQUEST).exists() and not (older / STOP_REQUEST).exists()

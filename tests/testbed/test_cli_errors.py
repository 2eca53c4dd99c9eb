"""The argument types several CLIs share (testbed/cli_errors.py): parsers' messages kept on one line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli_errors import OneLineErrorParser, arg_type, parse_gpu_ids

ROOT = Path(__file__).resolve().parents[2]


def test_arg_type_keeps_the_parsers_message_on_one_line() -> None:
    p = OneLineErrorParser(prog="t")
    p.add_argument("--gpu-ids", type=arg_type(parse_gpu_ids))
    assert p.parse_args(["--gpu-ids", "0, 1"]).gpu_ids == [0, 1]
    assert p.parse_args(["--gpu-ids", ""]).gpu_ids == []  # none: run_experiment.py on CPU
    for bad, message in (("0,x", "not a comma-separated list of GPU indices"), ("1,-1", "indices are >= 0")):
        with pytest.raises(ValueError, match=message):
            parse_gpu_ids(bad)
    typed = arg_type(parse_gpu_ids)
    with pytest.raises(argparse.ArgumentTypeError, match="GPU indices"):
        typed("a")
    # through the CLIs: the monitor and run_experiment.py say the same, on one line
    for cli in (["-m", "monitor"], ["run_experiment.py", "--mode", "traditional"]):
        proc = subprocess.run([sys.executable, *cli, "--gpu-ids", "0,x"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "'0,x' is not a comma-separated list of GPU indices" in proc.stderr
    empty = subprocess.run([sys.executable, "-m", "monitor", "--gpu-ids", ""], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert empty.returncode == 2 and "--gpu-ids is empty" in empty.stderr

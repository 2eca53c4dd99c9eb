"""A launcher run in the foreground as a user runs it, against fake vLLM processes (no vLLM needed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
FAKE_VLLM = Path(__file__).parent / "fake_vllm"  # first on PYTHONPATH: `-m vllm...` starts a /health stub
HOLDING = "stops everything"  # what the launcher prints once every instance is healthy
BOUND_S = 120.0  # only against a hang; nothing here measures speed


def fake_env() -> dict[str, str]:
    paths = [str(FAKE_VLLM), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHON": sys.executable}


class Foreground:
    """`python -m MODULE ARGS` in `cwd`, its stdout and stderr collected as they come."""

    def __init__(self, module: str, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=fake_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        into.extend(iter(stream.readline, ""))

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_holding(self) -> None:
        """Block until every instance is healthy and the launcher holds the foreground."""
        deadline = time.monotonic() + BOUND_S
        while HOLDING not in self.stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"launcher never held (rc {self.proc.poll()}):\n{self.stdout}{self.stderr}"
                )
            time.sleep(0.1)

    def finish(self) -> int:
        rc = self.proc.wait(BOUND_S)
        for t in self._readers:
            t.join(5)
        return rc


@contextlib.contextmanager
def foreground(module: str, args: list[str], cwd: Path, run_dir: Path) -> Iterator[Foreground]:
    """Run a launcher; whatever the test does, nothing it started outlives the test."""
    fg = Foreground(module, args, cwd)
    try:
        yield fg
    finally:
        if fg.proc.poll() is None:
            fg.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                fg.proc.wait(30)
        for pid_file in run_dir.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def kill_group(run_dir: Path, name: str) -> None:
    """SIGKILL instance `name` of a run behind the launcher's back (a crash, not a stop)."""
    os.killpg(int((run_dir / f"{name}.pid").read_text()), signal.SIGKILL)


def run_stop(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=fake_env(), capture_output=True, text=True, timeout=BOUND_S)

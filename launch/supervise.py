"""A run directory's group of processes: start them, wait for start-up, hold the foreground, stop them.

Stopping is a small protocol on the run directory, so that either side can end a run:
- `stop_run_dir` (the launchers' `stop` command) first writes the stop request `STOP_REQUEST`, then
  signals every process group that has a pid file there;
- a foreground launcher whose instance exits checks for that request: present, the stop was intended
  (quiet, exit 0); absent, the instance died on its own (exit 1, naming it and its log).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from launch.server import ManagedServer, ServerError, signal_group, wait_all_healthy

STOP_REQUEST = "stop-requested"  # written into the run directory by `stop` before it signals
STOP_GRACE_S = 20.0  # SIGINT, then SIGKILL after this long


def request_stop(run_dir: Path) -> None:
    (run_dir / STOP_REQUEST).write_text(f"pid {os.getpid()} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")


def stop_requested(run_dir: Path) -> bool:
    return (run_dir / STOP_REQUEST).exists()


def raise_interrupt(*_: object) -> None:
    """SIGTERM handler: stop the way Ctrl-C does."""
    raise KeyboardInterrupt


def run_group(
    servers: list[ManagedServer], run_dir: Path, timeout: float, detach: bool, stop_hint: str
) -> int:
    """Start `servers` in order, then `supervise` them. Returns the launcher's exit code."""
    (run_dir / STOP_REQUEST).unlink(missing_ok=True)  # left from an earlier run in the same directory
    signal.signal(signal.SIGTERM, raise_interrupt)
    started: list[ManagedServer] = []
    try:
        for s in servers:
            s.start()
            started.append(s)
    except (ServerError, KeyboardInterrupt) as exc:
        print(f"error: {exc}" if isinstance(exc, ServerError) else "\nstopping", file=sys.stderr)
        for s in started:
            s.stop()
        return 1 if isinstance(exc, ServerError) else 130
    return supervise(started, run_dir, timeout, detach, stop_hint)


def supervise(
    servers: list[ManagedServer], run_dir: Path, timeout: float, detach: bool, stop_hint: str
) -> int:
    """Start-up wait, then hold the foreground until Ctrl-C or `stop` (or return at once with --detach).

    0: healthy and detached, or stopped on request; 1: an instance failed or died on its own; 130: Ctrl-C.
    """
    try:
        wait_all_healthy(servers, timeout)
        for s in servers:
            print(f"{s.spec.name}: {s.spec.url} (log {s.log_path})")
        if detach:
            print(f"running; stop with: {stop_hint}")
            return 0
        print(f"Ctrl-C (or: {stop_hint}) stops everything", flush=True)
        while all(s.alive() for s in servers):
            time.sleep(0.5)
        if stop_requested(run_dir):
            print("stopped on request")
            return 0
        dead = next(s for s in servers if not s.alive())
        code = dead.proc.returncode if dead.proc else "?"
        print(
            f"error: {dead.spec.name} on :{dead.spec.port} exited on its own (code {code}); "
            f"see {dead.log_path}:\n{dead.log_tail()}",
            file=sys.stderr,
        )
        return 1
    except ServerError as exc:
        if stop_requested(run_dir):
            print("stopped on request before start-up finished")
            return 0
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 130
    finally:
        if not detach:
            for s in servers:
                s.stop()


def stop_run_dir(run_dir: str | Path) -> list[str]:
    """The launchers' `stop`: request the stop, then end every process group with a pid file in `run_dir`.

    A foreground launcher stops (and unlinks the pid files of) the rest as soon as one exits, so pid
    files may vanish while this runs. Returns what was signalled, as "name (pid N)".
    """
    run_dir = Path(run_dir)
    request_stop(run_dir)
    pids: dict[Path, int] = {}
    for pid_file in sorted(run_dir.glob("*.pid")):
        pid = _read_pid(pid_file)
        if pid is not None:
            pids[pid_file] = pid
            signal_group(pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for pid_file, pid in pids.items():
        wait_exit(pid, deadline - time.monotonic())
        signal_group(pid, signal.SIGKILL)  # what outlived the grace time, and leftover workers
        pid_file.unlink(missing_ok=True)
    return [f"{f.stem} (pid {pid})" for f, pid in pids.items()]


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for process `pid` to end; True if it did."""
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):  # gone meanwhile, or half written
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True

"""A run directory's group of processes: wait for start-up, hold the foreground, stop them all."""

from __future__ import annotations

import sys
import time

from launch.server import ManagedServer, ServerError, wait_all_healthy


def raise_interrupt(*_: object) -> None:
    """SIGTERM handler: stop the way Ctrl-C does."""
    raise KeyboardInterrupt


def supervise(servers: list[ManagedServer], timeout: float, detach: bool, stop_hint: str) -> int:
    """Start-up wait, then hold the foreground until Ctrl-C (or return at once with --detach)."""
    try:
        wait_all_healthy(servers, timeout)
        for s in servers:
            print(f"{s.spec.name}: {s.spec.url} (log {s.log_path})")
        if detach:
            print(f"running; stop with: {stop_hint}")
            return 0
        print("Ctrl-C stops everything")
        while all(s.alive() for s in servers):
            time.sleep(1.0)
        dead = [s for s in servers if not s.alive()]
        print(f"error: {dead[0].spec.name} exited; see {dead[0].log_path}", file=sys.stderr)
        return 1
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 130
    finally:
        if not detach:
            for s in servers:
                s.stop()

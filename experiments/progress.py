"""Live progress: completed / failed counts and current TTFT p50 (rich)."""

from __future__ import annotations

import sys
import time
from types import TracebackType

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from experiments.schema import Record


class LiveProgress:
    """A progress bar on stderr; plain periodic lines when stderr is not a terminal."""

    def __init__(self, total: int, warmup: int = 0, refresh_s: float = 0.5) -> None:
        self.total, self.warmup = total, warmup
        self.done = self.failed = self.warm_done = 0
        self._ttft_ms: list[float] = []
        self._p50: float | None = None
        self._last_stat = 0.0
        self._refresh_s = refresh_s
        console = Console(file=sys.stderr)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}  TTFT p50 {task.fields[ttft]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("measured", total=total, failed=0, ttft="-")
        self._plain = not console.is_terminal
        self._last_plain = 0.0

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None):
        self._progress.stop()
        self._print_plain(force=True)

    def phase(self, name: str) -> None:
        self._progress.update(self._task, description=name)
        if self._plain:
            print(f"[{name}]", file=sys.stderr, flush=True)

    def update(self, rec: Record) -> None:
        if rec.cancelled:  # reported at an interruption: neither done nor failed
            return
        if not rec.measured:
            self.warm_done += 1
            return
        self.done += 1
        ttft = rec.ttft_ms
        if ttft is None:
            self.failed += 1
        else:
            self._ttft_ms.append(ttft)
        now = time.monotonic()
        if now - self._last_stat > self._refresh_s and self._ttft_ms:
            self._p50 = float(np.median(self._ttft_ms))
            self._last_stat = now
        p50 = f"{self._p50:.1f} ms" if self._p50 is not None else "-"
        self._progress.update(self._task, completed=self.done, failed=self.failed, ttft=p50)
        self._print_plain()

    def _print_plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._plain or (not force and now - self._last_plain < 5.0):
            return
        self._last_plain = now
        p50 = f"{self._p50:.1f} ms" if self._p50 is not None else "-"
        print(
            f"  {self.done}/{self.total} done, {self.failed} failed, TTFT p50 {p50}",
            file=sys.stderr,
            flush=True,
        )

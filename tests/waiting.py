"""Tests wait on conditions, never on fixed sleeps: `wait_for` (threads, processes) and `wait_for_async`
(inside an event loop) poll a predicate until it holds, and fail naming what never happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.02


def wait_for(predicate: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    """Poll `predicate()` until it is true; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)


async def wait_for_async(
    predicate: Callable[[], object | Awaitable[object]], what: str, timeout_s: float = 10.0
) -> None:
    """`wait_for` inside an event loop; `predicate` may be a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(POLL_S)

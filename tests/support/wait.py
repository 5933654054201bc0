"""Waiting for a condition, never for a fixed time: poll until true, fail loudly at the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: Callable[[], str] | str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for: {description}")
        await asyncio.sleep(interval)

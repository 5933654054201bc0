"""A memory limiter in the spirit of the Collector's: refuse new data while the process's resident
memory is above `limits.memory_limit_mib`.

The queue's row and byte bounds are the primary mechanism; this is the safety net for what they
estimate wrongly (huge attributes, fragmentation, request bodies in flight). RSS is sampled in the
background (reading /proc is cheap, but not free per request). Refusing only helps while the queue
holds data that will be released, so the guard only refuses while the queue is not empty — it can
never lock the receiver out for good because the allocator keeps pages after a burst.

It is also the pool the decode budgets of requests in flight reserve from (receiver.convert.budget):
a request may be charged more decode memory while RSS plus everything reserved stays under the limit,
or when it is the only request holding any (so one request can always make progress).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryGuard:
    def __init__(
        self, limit_bytes: int, interval_s: float = 0.1, sample: Callable[[], int] = current_rss_bytes
    ) -> None:
        self.limit_bytes = limit_bytes
        self.resume_bytes = int(limit_bytes * 0.9)  # hysteresis: resume below 90 % of the limit
        self._interval = interval_s
        self._sample = sample
        self.rss_bytes = sample()
        self.peak_rss_bytes = self.rss_bytes
        self.over_limit = False
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # budgets reserve from decode worker threads
        self.reserved_bytes = 0  # decode memory reserved by the requests in flight

    def reserve(self, nbytes: int, held: int) -> bool:
        """Reserve decode memory for a request already holding `held` bytes of it (MemoryPool)."""
        with self._lock:
            alone = self.reserved_bytes == held
            if self.enabled and not alone and self.rss_bytes + self.reserved_bytes + nbytes > self.limit_bytes:
                return False
            self.reserved_bytes += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.reserved_bytes -= nbytes

    @property
    def enabled(self) -> bool:
        return self.limit_bytes > 0

    def refresh(self) -> None:
        self.rss_bytes = self._sample()
        self.peak_rss_bytes = max(self.peak_rss_bytes, self.rss_bytes)
        if not self.enabled:
            return
        if self.over_limit:
            self.over_limit = self.rss_bytes > self.resume_bytes
        else:
            self.over_limit = self.rss_bytes > self.limit_bytes

    async def _run(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="memory-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

"""Hand memory freed after a backlog back to the operating system.

Why: when PostgreSQL falls behind for a few seconds the queue fills (up to pipeline.queue_max_bytes) and
the receiver's RSS grows by about as much. Once the queue drains, the rows are freed, but glibc keeps
most of those pages: the queued rows' large strings live in holes of the heap and in the decode threads'
own arenas, which it only returns to the kernel at the top of the heap. RSS then stays at the backlog's
high-water mark for good (measured in a 30-minute soak: 195 MB before one burst, 270-304 MB after it
with the queue empty again), which looks like a leak on a dashboard and counts against a container's
memory limit and `limits.memory_limit_mib`.

`malloc_trim(0)` returns every whole free page of every arena. It runs here only when it can pay off:
the queue holds little (so the memory a backlog took has been freed) and RSS has grown by at least
`min_gain_bytes` since the last trim; at most once per `interval_s`; in a worker thread, never on the
event loop. Without glibc (musl, macOS) there is no malloc_trim and this does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable

from receiver.pipeline.memory import current_rss_bytes


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def trim_available() -> bool:
    """True where the C library has malloc_trim (glibc)."""
    return _MALLOC_TRIM is not None


def trim_now(sample: Callable[[], int] = current_rss_bytes) -> int:
    """malloc_trim(0); returns how much RSS fell (bytes, 0 if it did not). Blocks: call it off the loop."""
    if _MALLOC_TRIM is None:
        return 0
    before = sample()
    _MALLOC_TRIM(0)
    return max(before - sample(), 0)


class AllocatorTrimmer:
    """Trims after the queue has drained; see the module docstring.

    `queued_bytes` reads what the queue holds now, `quiet_bytes` is the level under which it counts as
    drained, `rss` the RSS the memory guard last sampled. `on_trim(freed_bytes)` is told each trim."""

    def __init__(
        self,
        queued_bytes: Callable[[], int],
        quiet_bytes: int,
        rss: Callable[[], int],
        on_trim: Callable[[int], None],
        *,
        min_gain_bytes: int = 32 * 1024 * 1024,
        interval_s: float = 5.0,
    ) -> None:
        self._queued_bytes = queued_bytes
        self._quiet_bytes = quiet_bytes
        self._rss = rss
        self._on_trim = on_trim
        self._min_gain = min_gain_bytes
        self._interval = interval_s
        self._floor = rss()  # RSS after the last trim (or at start)
        self._task: asyncio.Task[None] | None = None

    def due(self) -> bool:
        """Whether a trim can pay off now: the queue drained and RSS well above the last trim's."""
        if _MALLOC_TRIM is None:
            return False
        if self._queued_bytes() > self._quiet_bytes:
            return False
        return self._rss() - self._floor >= self._min_gain

    async def maybe_trim(self) -> int | None:
        """Trim if due; the bytes RSS fell by, or None when not due."""
        if not self.due():
            return None
        freed = await asyncio.to_thread(trim_now)
        self._floor = current_rss_bytes()
        self._on_trim(freed)
        return freed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.maybe_trim()

    def start(self) -> None:
        if _MALLOC_TRIM is not None:
            self._task = asyncio.create_task(self._run(), name="allocator-trim")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

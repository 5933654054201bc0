"""The bounded thread pool request bodies are decoded and converted in, off the event loop.

Why: decoding a large request takes long (hundreds of ms for tens of MB). On the event loop that time
is a stall for every other client and for /health. In a worker thread it is not: the scanners, zlib and
the OTLP/JSON transcoder run without the GIL, and the native decoder and the Python converters hand the
GIL back every few ms, so the event loop keeps answering. The pool is bounded (`otlp.decode_threads`):
requests beyond it wait their turn holding only their body, and their decode memory is bounded by their
budgets. Requests of a few KB (ingest.INLINE_DECODE_MAX_BYTES, uncompressed) skip the pool: the round
trip to a thread costs more than decoding them on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class DecodePool:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")
        self.waiting = 0  # requests queued or being decoded

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        self.waiting += 1
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self.waiting -= 1

    def shutdown(self) -> None:
        """Finish the decodes under way, drop the queued ones (their requests are gone)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

"""How late the event loop runs what it was asked to run: the receiver's own stall detector.

Why: a stalled event loop answers nothing (health checks, other clients, the writers) until it is free
again. A task asks to wake up every `interval_s` and records how late it woke: the lag. Any CPU work
that holds the loop (or the GIL) shows up here, whoever caused it. Exposed as a histogram
(observatory_event_loop_lag_seconds: how many wake-ups were later than 1 s, ...) and the largest lag of
the last `window_s` (observatory_event_loop_lag_max_seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from prometheus_client import Gauge, Histogram


class LoopLagMonitor:
    def __init__(
        self, histogram: Histogram, window_max: Gauge, interval_s: float = 0.05, window_s: float = 60.0
    ) -> None:
        self._histogram = histogram
        self._window_max = window_max
        self.interval_s = interval_s
        self.window_s = window_s
        self.max_lag_s = 0.0  # since start
        self._recent: deque[tuple[float, float]] = deque()  # (when, lag), decreasing lags
        self._task: asyncio.Task[None] | None = None

    def record(self, now: float, lag: float) -> None:
        self._histogram.observe(lag)
        self.max_lag_s = max(self.max_lag_s, lag)
        recent = self._recent
        while recent and recent[-1][1] <= lag:  # a smaller, older lag can never be the window's max again
            recent.pop()
        recent.append((now, lag))
        while recent[0][0] < now - self.window_s:
            recent.popleft()
        self._window_max.set(recent[0][1])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self.record(now, max(0.0, now - due))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

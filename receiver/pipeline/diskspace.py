"""Free space of the spool's file system, measured cheaply: statvfs at most every `interval_s`, and in
between an estimate (the last measurement minus what the spool wrote since).

Why: the spool shares its file system with logs, the embedded database and whatever else the host
keeps there; it must refuse before it drives that file system to zero (`spool.min_free_bytes`), and a
statvfs per request would cost a system call on every acknowledgement. The estimate only errs on the
safe side for the spool's own writes; a deleted segment forces a new measurement, so freed space is
seen at once. Thread-safe enough for its use: the spool's I/O thread writes, the event loop reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

CHECK_INTERVAL_S = 0.1


class FreeSpace:
    def __init__(
        self,
        path: Path,
        min_free_bytes: int,
        interval_s: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.interval_s = interval_s
        self._clock = clock
        self._free: int | None = None
        self._measured_at = float("-inf")
        self.measurements = 0

    def measure(self) -> int:
        """statvfs now: bytes an unprivileged writer may still use (root's reserve excluded)."""
        st = os.statvfs(self.path)
        self._free = st.f_bavail * st.f_frsize
        self._measured_at = self._clock()
        self.measurements += 1
        return self._free

    def fresh(self) -> bool:
        """Measured within the last interval (and not invalidated since)."""
        return self._clock() - self._measured_at < self.interval_s

    def available(self) -> int:
        """Free bytes: re-measured when the last measurement is older than the interval."""
        if self._free is None or not self.fresh():
            return self.measure()
        return self._free

    def consumed(self, nbytes: int) -> None:
        """The spool wrote `nbytes`: lower the estimate until the next measurement."""
        if self._free is not None:
            self._free -= nbytes

    def invalidate(self) -> None:
        """Space was freed (a segment deleted): measure again before the next decision."""
        self._measured_at = float("-inf")

    def has_room(self, nbytes: int) -> bool:
        """Would writing `nbytes` leave at least min_free_bytes free? Always true with the floor off."""
        if self.min_free_bytes <= 0:
            return True
        return self.available() - nbytes >= self.min_free_bytes

    def last_known(self) -> int | None:
        """The current estimate without measuring (None before the first measurement)."""
        return self._free

"""The accepted time window of one signal's items, relative to the time the request was received.

Why: an item's time picks the chunk (TimescaleDB) or daily partition (native) it is stored in. One
request whose start times are spread over 1970-2100 made 1,967 chunks; items older than the table's
retention were acknowledged and then deleted by the next retention pass without a word to the client.
So an item whose time is older than the retention, or further ahead of the receive time than
`limits.max_future_skew_s`, is rejected (partial_success, with a message naming the window) and never
stored.

Pure: the window is relative to `ConvertOptions.received_unix_nanos`, never to a clock read here. The
spool stores each record's receive time and window, so a replay yields exactly the rows the live
path did, however late it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

NANOS_PER_SECOND = 1_000_000_000
MAX_UNIX_NANOS = (1 << 64) - 1  # OTLP times are fixed64


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How old and how far ahead of the receive time an item's time may be (seconds; None = unbounded)."""

    retention_s: int | None = None
    max_future_skew_s: int | None = None

    def bounds(self, received_unix_nanos: int) -> tuple[int, int]:
        """(earliest, latest) accepted item time in Unix ns, inclusive. Unbounded without a receive time."""
        if received_unix_nanos <= 0:
            return 0, MAX_UNIX_NANOS
        earliest = 0
        if self.retention_s is not None:
            earliest = max(0, received_unix_nanos - self.retention_s * NANOS_PER_SECOND)
        latest = MAX_UNIX_NANOS
        if self.max_future_skew_s is not None:
            latest = min(MAX_UNIX_NANOS, received_unix_nanos + self.max_future_skew_s * NANOS_PER_SECOND)
        return earliest, latest

    def problem(self, what: str, time_unix_nanos: int, received_unix_nanos: int) -> str:
        """Why `time_unix_nanos` (outside bounds(received)) is refused, naming the window.

        `what` names the time ("start time", "time", "observed time")."""
        earliest, latest = self.bounds(received_unix_nanos)
        window = f"(accepted: {format_time(earliest)} to {format_time(latest)})"
        when = format_time(time_unix_nanos)
        if time_unix_nanos < earliest:
            return f"{what} {when} is older than the {span_text(self.retention_s)} retention {window}"
        return (
            f"{what} {when} is more than {self.max_future_skew_s} s ahead of the receive time "
            f"(limits.max_future_skew_s) {window}"
        )


NO_WINDOW = TimeWindow()


def format_time(unix_nanos: int) -> str:
    """UTC, to the second: '1971-03-02T04:05:06Z'."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_nanos // NANOS_PER_SECOND))


def span_text(seconds: int | None) -> str:
    """A retention as people write it: '90-day', '36-hour', '90-second'."""
    if seconds is None:
        return "unlimited"
    if seconds % 86400 == 0:
        return f"{seconds // 86400}-day"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}-hour"
    return f"{seconds}-second"

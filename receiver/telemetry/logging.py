"""Structured logs (structlog, JSON by default) and a rate limiter for lines that could flood.

Every refusal, retry and drop is logged, but under load the same warning could be emitted thousands
of times a second; `RateLimitedLog` emits one line per key per interval and says how many it held back.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog

LEVELS = ("debug", "info", "warning", "error")


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    numeric = getattr(logging, level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write() per line (PrintLogger writes the newline separately): worker processes share stderr,
        # and their lines must not interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(component: str) -> Any:
    return structlog.get_logger().bind(component=component)


class RateLimitedLog:
    """At most one line per key per `interval_s`; the next line carries `suppressed=N`."""

    def __init__(self, log: Any, interval_s: float = 10.0) -> None:
        self._log = log
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def _emit(self, method: str, key: str, event: str, **fields: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) > 1024:  # keys come from a fixed set in practice; stay bounded anyway
            self._last.clear()
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        getattr(self._log, method)(event, **fields)

    def warning(self, key: str, event: str, **fields: Any) -> None:
        self._emit("warning", key, event, **fields)

    def error(self, key: str, event: str, **fields: Any) -> None:
        self._emit("error", key, event, **fields)

    def info(self, key: str, event: str, **fields: Any) -> None:
        self._emit("info", key, event, **fields)

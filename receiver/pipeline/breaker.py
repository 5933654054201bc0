"""Circuit breaker in front of the database writers.

closed    : writes go through; failures are counted.
open      : after `failure_threshold` consecutive transient failures, or a failure rate of at least
            `failure_rate` over the last `window` attempts: nobody writes for `cooldown_s` (doubling
            after each failed probe, up to `max_cooldown_s`) — a dead database is not hammered by every
            writer, and in spool mode accepted data goes straight to disk.
half-open : after the cool-down one writer probes; success closes the breaker, failure re-opens it.

The longest cool-down bounds how long a database that came back stays unused: up to `max_cooldown_s`
after a long outage. While `urgent()` is true (in spool mode: the spool is near full, so clients are
about to be refused) the cool-down is never longer than `cooldown_s`: one probe write every few seconds
is cheap next to refusing every client for half a minute.

Only transient failures count: a row the database refuses means the database is answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class BreakerState(enum.Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: int = 20
    cooldown_s: float = 2.0
    max_cooldown_s: float = 30.0


class CircuitBreaker:
    def __init__(
        self,
        settings: BreakerSettings,
        on_transition: Callable[[BreakerState, BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        urgent: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.urgent = urgent  # when it returns True, the cool-down is capped at settings.cooldown_s
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._outcomes: deque[bool] = deque(maxlen=settings.window)
        self._cooldown = settings.cooldown_s
        self._open_until = 0.0
        self._opened_at = 0.0
        self._probing = False
        self._changed = asyncio.Event()
        self._on_transition = on_transition
        self._clock = clock
        self.opened_total = 0

    @property
    def is_open(self) -> bool:
        """True while writes are held back (open, or half-open with a probe in flight)."""
        return self.state is not BreakerState.CLOSED

    def _probe_at(self) -> float:
        """When the open breaker lets the next probe through."""
        if self.urgent is not None and self.urgent():
            return min(self._open_until, self._opened_at + self.settings.cooldown_s)
        return self._open_until

    def cooldown_remaining(self) -> float:
        return max(0.0, self._probe_at() - self._clock()) if self.state is BreakerState.OPEN else 0.0

    def _move(self, state: BreakerState) -> None:
        previous, self.state = self.state, state
        if previous is state:
            return
        if state is BreakerState.OPEN:
            self.opened_total += 1
        self._changed.set()
        self._changed = asyncio.Event()
        if self._on_transition is not None:
            self._on_transition(previous, state)

    async def allow(self) -> None:
        """Wait until this caller may attempt a write."""
        while True:
            if self.state is BreakerState.CLOSED:
                return
            if self.state is BreakerState.OPEN:
                remaining = self._probe_at() - self._clock()
                if remaining <= 0 and not self._probing:
                    self._probing = True
                    self._move(BreakerState.HALF_OPEN)
                    return  # this caller is the probe
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(max(remaining, 0.01), 0.1))
                continue
            await self._changed.wait()  # half-open: wait for the probe's verdict

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._outcomes.append(True)
        if self.state is not BreakerState.CLOSED:
            self._probing = False
            self._cooldown = self.settings.cooldown_s
            self._outcomes.clear()
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        self._outcomes.append(False)
        s = self.settings
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False
            self._cooldown = min(s.max_cooldown_s, self._cooldown * 2)
            self._open(self._cooldown)
            return
        if self.state is BreakerState.OPEN:
            return
        failures = self._outcomes.count(False)
        rate_tripped = len(self._outcomes) >= s.window and failures / len(self._outcomes) >= s.failure_rate
        if self.consecutive_failures >= s.failure_threshold or rate_tripped:
            self._open(self._cooldown)

    def abandon_probe(self) -> None:
        """The probing write was cancelled without a verdict: let the next caller probe."""
        if self.state is BreakerState.HALF_OPEN and self._probing:
            self._probing = False
            self._open(0.0)

    def _open(self, cooldown: float) -> None:
        self._opened_at = self._clock()
        self._open_until = self._opened_at + cooldown
        self._move(BreakerState.OPEN)

"""Circuit breaker transitions (pure, with a controllable clock)."""

from __future__ import annotations

import asyncio

from receiver.pipeline.breaker import BreakerSettings, BreakerState, CircuitBreaker


def make(**settings: float) -> tuple[CircuitBreaker, list[float], list[tuple[str, str]]]:
    now = [0.0]
    moves: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        BreakerSettings(**settings),  # type: ignore[arg-type]
        on_transition=lambda a, b: moves.append((a.name, b.name)),
        clock=lambda: now[0],
    )
    return breaker, now, moves


async def test_opens_after_consecutive_failures_and_closes_after_a_good_probe():
    breaker, now, moves = make(failure_threshold=3, cooldown_s=5, window=100)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.cooldown_remaining() == 5
    waiter = asyncio.ensure_future(breaker.allow())
    await asyncio.sleep(0)
    assert not waiter.done()  # nobody writes while open
    now[0] = 5.0
    await asyncio.wait_for(waiter, 2)  # the first caller after the cool-down is the probe
    assert breaker.state is BreakerState.HALF_OPEN
    second = asyncio.ensure_future(breaker.allow())
    await asyncio.sleep(0.06)
    assert not second.done()  # one probe at a time
    breaker.record_success()
    await asyncio.wait_for(second, 2)
    assert breaker.state is BreakerState.CLOSED
    assert moves == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


async def test_failed_probe_reopens_with_a_longer_cooldown():
    breaker, now, _ = make(failure_threshold=1, cooldown_s=2, max_cooldown_s=5)
    breaker.record_failure()
    now[0] = 2.0
    await breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.cooldown_remaining() == 4
    now[0] = 6.0
    await breaker.allow()
    breaker.record_failure()
    assert breaker.cooldown_remaining() == 5  # capped at max_cooldown_s


async def test_failure_rate_over_the_window_opens_it():
    breaker, _, _ = make(failure_threshold=100, failure_rate=0.5, window=10)
    for i in range(10):
        (breaker.record_failure if i % 2 else breaker.record_success)()
    assert breaker.state is BreakerState.OPEN


async def test_an_abandoned_probe_lets_the_next_caller_probe():
    breaker, now, _ = make(failure_threshold=1, cooldown_s=1)
    breaker.record_failure()
    now[0] = 1.0
    await breaker.allow()
    breaker.abandon_probe()
    await asyncio.wait_for(breaker.allow(), 2)
    assert breaker.state is BreakerState.HALF_OPEN


async def test_while_urgent_the_cooldown_is_never_longer_than_the_first():
    """Spool near full: a long cool-down would keep refusing clients after the database is back."""
    breaker, now, _ = make(failure_threshold=1, cooldown_s=2, max_cooldown_s=30)
    urgent = [False]
    breaker.urgent = lambda: urgent[0]
    breaker.record_failure()
    for at in (2.0, 6.0, 14.0, 30.0):  # failed probes: 4, 8, 16, then 30 s
        now[0] = at
        await breaker.allow()
        breaker.record_failure()
    assert breaker.cooldown_remaining() == 30
    waiter = asyncio.ensure_future(breaker.allow())
    now[0] = 32.0
    await asyncio.sleep(0.15)
    assert not waiter.done(), "not urgent: the full 30 s"
    urgent[0] = True
    assert breaker.cooldown_remaining() == 0
    await asyncio.wait_for(waiter, 2)  # the probe goes now, 2 s after the breaker opened
    assert breaker.state is BreakerState.HALF_OPEN

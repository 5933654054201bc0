"""receiver.frontends.eager: export calls run at once in the protocol callback, and a call that waits is
driven on by a task exactly as if it had been one from the start."""

from __future__ import annotations

import asyncio

import pytest

from receiver.frontends import eager


async def test_a_call_that_never_waits_finishes_without_a_task():
    done = []

    async def call() -> None:
        done.append(1)

    assert eager.start(call()) is None and done == [1]


async def test_a_call_that_waits_is_driven_on_from_where_it_stopped():
    """_resume: the result, an exception and a cancellation reach the call where it waits, as in a task."""
    loop = asyncio.get_running_loop()
    gate, failing, never, blocked = loop.create_future(), loop.create_future(), loop.create_future(), asyncio.Event()
    seen: list[object] = []

    async def call() -> None:
        seen.append(await gate)
        await asyncio.sleep(0)  # a bare yield
        try:
            await failing
        except ValueError as exc:
            seen.append(str(exc))
        try:
            blocked.set()
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    started = call()
    task = loop.create_task(eager.resume(started, started.send(None)))
    await asyncio.sleep(0)
    assert seen == [] and not task.done()
    gate.set_result(7)
    failing.set_exception(ValueError("boom"))
    await blocked.wait()
    assert seen == [7, "boom"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [7, "boom", "cancelled"] and never.cancelled()

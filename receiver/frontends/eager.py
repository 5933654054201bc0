"""Run an export call at once, in the protocol callback that finished reading it, instead of in a task.

An uncompressed small export in memory durability never waits on anything: started here it is answered
before the callback returns, without the cost of a task and a turn of the event loop per call (the 1-span
request is mostly fixed cost). A call that does wait (the spool's fsync, the decode pool) is handed to a
task that drives it on from where it stopped (`resume`), with the semantics a task gives it.
Python 3.12's eager task factory does the same for a whole loop; the receiver supports 3.11.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start(call: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `call` until it finishes (None) or first waits (then the task now driving it)."""
    try:
        awaited = call.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(resume(call, awaited))


async def resume(call: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Drive a coroutine started outside a task from the future it waits on, as a task would: it is
    resumed once that future is done, and sees the future's result, exception or this task's
    cancellation where it waits."""
    while True:
        try:
            if awaited is None:  # a bare yield (asyncio.sleep(0)): resume on the next turn
                await asyncio.sleep(0)
            else:
                # The call's own `await` marked the future as waited on; a task takes that mark off when
                # it receives the future, and so must we before awaiting it here.
                awaited._asyncio_future_blocking = False
                await awaited
        except BaseException as exc:  # cancelled, or the future failed: raised where the call waits
            try:
                awaited = call.throw(exc)
            except StopIteration:
                return
            continue
        try:
            awaited = call.send(None)
        except StopIteration:
            return

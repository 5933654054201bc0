"""The bounded queue between front ends and COPY writers.

Bounded by rows and by bytes, counted from admission until the rows are committed (or handed to the
dead-letter store), so the bound holds for everything the receiver holds in memory. Full means
refuse: `offer` never blocks and never grows past the bounds. Each table has its own lane and no lane
may take more than `max_share` of either bound, so a flood of one signal cannot starve the others;
writers take from the lanes in turn.

The same share caps the writers one lane may occupy at once (and always leaves one writer for the
other lanes): when one table stalls — locked, slow, or its batches retried — its batches can hold
only some of the writers, and the other tables keep being written.

A `Ticket` is one acknowledged submission. It may be split into chunks across lanes; when the last
chunk is done its callback runs (the spool deletes its record then).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


class Ticket:
    """Tracks the chunks of one submission; `on_done` runs once, after the last one completes."""

    __slots__ = ("on_done", "remaining")

    def __init__(self, on_done: Callable[[], None] | None = None) -> None:
        self.remaining = 0
        self.on_done = on_done

    def chunk_done(self) -> None:
        self.remaining -= 1
        if self.remaining == 0 and self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback()


class Chunk:
    """Rows for one table, at most one batch long, with the memory they are charged for."""

    __slots__ = ("enqueued_at", "nbytes", "rows", "table", "ticket")

    def __init__(self, table: str, rows: Sequence[tuple[Any, ...]], nbytes: int, ticket: Ticket) -> None:
        self.table = table
        self.rows = rows
        self.nbytes = nbytes
        self.ticket = ticket
        self.enqueued_at = 0.0


@dataclass(slots=True)
class Batch:
    """What one writer COPYs in one transaction: whole chunks of one table."""

    table: str
    chunks: list[Chunk]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def oldest(self) -> float:
        return min(c.enqueued_at for c in self.chunks)


class BoundedQueue:
    def __init__(
        self,
        tables: Iterable[str],
        max_rows: int,
        max_bytes: int,
        max_share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        writers: int = 0,
    ) -> None:
        self.tables = tuple(tables)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        share = max_share if len(self.tables) > 1 else 1.0
        self.lane_max_rows = max(1, int(max_rows * share))
        self.lane_max_bytes = max(1, int(max_bytes * share))
        # Writers one lane may hold at once: its share of them, but never all (with 2+ writers).
        # share 1.0 (or a single table, or writers unknown) means no cap.
        self.lane_max_writers = writers if writers > 0 else 1 << 30
        if share < 1.0 and writers > 1:
            self.lane_max_writers = min(writers - 1, max(1, math.ceil(writers * share)))
        self._clock = clock
        self._pending: dict[str, deque[Chunk]] = {t: deque() for t in self.tables}
        self._pending_rows = dict.fromkeys(self.tables, 0)
        self._held_rows = dict.fromkeys(self.tables, 0)  # pending + being written
        self._held_bytes = dict.fromkeys(self.tables, 0)
        self._writing = dict.fromkeys(self.tables, 0)  # batches taken and not yet completed
        self.rows = 0
        self.nbytes = 0
        self._turn = 0
        self._closed = False
        self._wakeup: asyncio.Future[None] | None = None  # shared by writers waiting for data
        # A full batch, as the writers last asked for one (`take`'s max_rows): an offer wakes the
        # waiting writers only when it makes a lane ready or gives an empty lane its first chunk (a
        # new deadline). Waking them for every small request cost more than the request itself.
        self._batch_rows = 1

    # -- admission -------------------------------------------------------------------------------

    def room_for_bytes(self, nbytes: int, table: str | None = None, rows: int = 0) -> bool:
        """Cheap check before decoding a body: would `nbytes` (and `rows`) more fit, in the whole queue
        and, given `table`, in that table's lane? The lane matters most: with one signal flowing, its
        lane fills long before the queue does, and a request admitted to decoding only to be refused
        by `offer` has cost its whole conversion for nothing."""
        if self._closed or self.nbytes + nbytes > self.max_bytes or self.rows + rows > self.max_rows:
            return False
        if table is None:
            return True
        return (
            self._held_bytes[table] + nbytes <= self.lane_max_bytes
            and self._held_rows[table] + rows <= self.lane_max_rows
        )

    def offer(self, chunks: Sequence[Chunk]) -> bool:
        """Admit all chunks or none. Never blocks; False means full (or closed): refuse upstream."""
        if self._closed:
            return False
        if len(chunks) == 1:  # most requests: one signal, fewer rows than a batch
            return self._offer_one(chunks[0])
        return self._offer_many(chunks)

    def _offer_many(self, chunks: Sequence[Chunk]) -> bool:
        add_rows: dict[str, int] = {}
        add_bytes: dict[str, int] = {}
        for chunk in chunks:
            add_rows[chunk.table] = add_rows.get(chunk.table, 0) + len(chunk.rows)
            add_bytes[chunk.table] = add_bytes.get(chunk.table, 0) + chunk.nbytes
        total_rows = sum(add_rows.values())
        total_bytes = sum(add_bytes.values())
        if self.rows + total_rows > self.max_rows or self.nbytes + total_bytes > self.max_bytes:
            return False
        for table, rows in add_rows.items():
            if self._held_rows[table] + rows > self.lane_max_rows:
                return False
            if self._held_bytes[table] + add_bytes[table] > self.lane_max_bytes:
                return False
        now = self._clock()
        wake = False
        for chunk in chunks:
            chunk.enqueued_at = now
            chunk.ticket.remaining += 1
            lane = self._pending[chunk.table]
            wake = wake or not lane
            lane.append(chunk)
            self._pending_rows[chunk.table] += len(chunk.rows)
        for table, rows in add_rows.items():
            self._held_rows[table] += rows
            self._held_bytes[table] += add_bytes[table]
            wake = wake or self._pending_rows[table] >= self._batch_rows
        self.rows += total_rows
        self.nbytes += total_bytes
        if wake:
            self._notify()
        return True

    def _offer_one(self, chunk: Chunk) -> bool:
        """offer() of a single chunk, the same checks without the per-table sums."""
        table = chunk.table
        rows = len(chunk.rows)
        nbytes = chunk.nbytes
        if self.rows + rows > self.max_rows or self.nbytes + nbytes > self.max_bytes:
            return False
        if self._held_rows[table] + rows > self.lane_max_rows or self._held_bytes[table] + nbytes > self.lane_max_bytes:
            return False
        chunk.enqueued_at = self._clock()
        chunk.ticket.remaining += 1
        lane = self._pending[table]
        wake = not lane
        lane.append(chunk)
        pending = self._pending_rows[table] = self._pending_rows[table] + rows
        self._held_rows[table] += rows
        self._held_bytes[table] += nbytes
        self.rows += rows
        self.nbytes += nbytes
        if wake or pending >= self._batch_rows:
            self._notify()
        return True

    # -- writers ---------------------------------------------------------------------------------

    async def take(self, max_rows: int, max_wait_s: float) -> Batch | None:
        """Next batch: a lane with `max_rows` waiting, or whose oldest chunk waited `max_wait_s`.

        A lane already holding `lane_max_writers` batches is skipped until one of them completes.
        Returns None once the queue is closed and empty. After `close`, everything is ready at once.
        """
        self._batch_rows = max_rows
        while True:
            now = self._clock()
            deadline = None
            capped = False
            count = len(self.tables)
            for step in range(count):
                table = self.tables[(self._turn + step) % count]
                lane = self._pending[table]
                if not lane:
                    continue
                if self._writing[table] >= self.lane_max_writers:
                    capped = True  # complete() wakes us when this lane frees a writer
                    continue
                ready_at = lane[0].enqueued_at + max_wait_s
                if self._closed or self._pending_rows[table] >= max_rows or ready_at <= now:
                    self._turn = (self._turn + step + 1) % count
                    return self._pop(table, max_rows)
                deadline = ready_at if deadline is None else min(deadline, ready_at)
            if self._closed and deadline is None and not capped:
                return None
            await self._wait(None if deadline is None else max(0.0, deadline - now))

    async def _wait(self, timeout: float | None) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.get_running_loop().create_future()
        # shield: one writer's timeout must not cancel the future the others wait on.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._wakeup), timeout)

    def _pop(self, table: str, max_rows: int) -> Batch:
        lane = self._pending[table]
        chunks: list[Chunk] = []
        rows: list[tuple[Any, ...]] = []
        while lane and (not chunks or len(rows) + len(lane[0].rows) <= max_rows):
            chunk = lane.popleft()
            chunks.append(chunk)
            rows.extend(chunk.rows)
        self._pending_rows[table] -= len(rows)
        self._writing[table] += 1
        return Batch(table, chunks, rows)

    def complete(self, batch: Batch) -> None:
        """The batch is committed (or quarantined): release its capacity and finish its tickets."""
        tickets = [chunk.ticket for chunk in batch.chunks]
        self.release(batch)
        for ticket in tickets:
            ticket.chunk_done()

    def release(self, batch: Batch) -> None:
        """Forget a batch that was not written (shutdown in spool mode): free its memory; its tickets
        stay unfinished, so the spool keeps the records."""
        table = batch.table
        writing = self._writing[table]
        self._writing[table] = writing - 1
        if writing >= self.lane_max_writers and self._pending[table]:
            self._notify()  # a writer may have skipped this lane while it was at its cap
        for chunk in batch.chunks:
            n = len(chunk.rows)
            self._held_rows[table] -= n
            self._held_bytes[table] -= chunk.nbytes
            self.rows -= n
            self.nbytes -= chunk.nbytes
            chunk.rows = ()

    def close(self) -> None:
        """Stop admitting; writers drain what is left without waiting for batches to fill."""
        self._closed = True
        self._notify()

    @property
    def closed(self) -> bool:
        return self._closed

    def pending_rows(self, table: str) -> int:
        return self._pending_rows[table]

    def held_rows(self, table: str) -> int:
        return self._held_rows[table]

    def _notify(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

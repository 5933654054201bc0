"""The pipeline facade the front ends talk to: admit rows (or refuse), and drain on shutdown.

Front ends hand over rows per table with an estimate of their memory; the pipeline answers at once
whether they were admitted. It never waits for room: a full pipeline is the front end's cue to answer
with a retryable status, so memory stays bounded and the client keeps the data.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from receiver.pipeline.queue import BoundedQueue, Chunk, Ticket
from receiver.pipeline.sink import CopySink


class Admission(enum.Enum):
    ACCEPTED = "accepted"
    FULL = "full"  # retryable: try again later
    CLOSED = "closed"  # shutting down: retryable elsewhere or later


class Pipeline:
    def __init__(self, queue: BoundedQueue, sink: CopySink, chunk_rows: int) -> None:
        self.queue = queue
        self.sink = sink
        self._chunk_rows = chunk_rows

    def room_for_bytes(self, nbytes: int) -> bool:
        return self.queue.room_for_bytes(nbytes)

    def submit(self, rows_by_table: Mapping[str, Sequence[tuple[Any, ...]]], nbytes: int) -> Admission:
        """Admit every row or none. `nbytes` is the memory the rows are charged for."""
        if self.queue.closed:
            return Admission.CLOSED
        total = sum(len(rows) for rows in rows_by_table.values())
        if total == 0:
            return Admission.ACCEPTED
        ticket = Ticket()
        chunks: list[Chunk] = []
        step = self._chunk_rows
        for table, rows in rows_by_table.items():
            for start in range(0, len(rows), step):
                part = rows[start : start + step] if len(rows) > step else rows
                chunks.append(Chunk(table, part, nbytes * len(part) // total, ticket))
        return Admission.ACCEPTED if self.queue.offer(chunks) else Admission.FULL

    async def start(self) -> None:
        await self.sink.start()

    async def stop(self, timeout_s: float) -> None:
        await self.sink.stop(timeout_s)

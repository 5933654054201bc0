"""The pipeline facade the front ends talk to: admit rows (or refuse), and drain on shutdown.

memory durability: rows are acknowledged once they are in the bounded queue.
spool durability : the request is appended to the write-ahead spool and fsynced first; its rows go
                   to the queue when there is room and the breaker is closed, otherwise they wait on
                   disk (up to spool.max_bytes) and are replayed later.

The pipeline never waits for room: a full pipeline is the front end's cue to answer with a
retryable status, so memory stays bounded and the client keeps the data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.pipeline.breaker import CircuitBreaker
from receiver.pipeline.memory import MemoryGuard
from receiver.pipeline.queue import BoundedQueue, Chunk, Ticket
from receiver.pipeline.sink import CopySink
from receiver.pipeline.spool import Spool, SpoolDiskFull, SpoolFull

Rows = Mapping[str, Sequence[tuple[Any, ...]]]


class Admission(enum.Enum):
    ACCEPTED = "accepted"
    FULL = "full"  # retryable: the queue (or the spool) is full
    MEMORY = "memory"  # retryable: the process is above limits.memory_limit_mib
    CLOSED = "closed"  # retryable: shutting down
    SPOOL_ERROR = "spool_error"  # retryable: the spool could not write (I/O error)
    DISK_FULL = "spool_disk_full"  # retryable: the spool's file system is full or below spool.min_free_bytes


class Pipeline:
    def __init__(
        self,
        queue: BoundedQueue,
        sink: CopySink,
        breaker: CircuitBreaker,
        chunk_rows: int,
        memory: MemoryGuard | None = None,
    ) -> None:
        self.queue = queue
        self.sink = sink
        self.breaker = breaker
        self.memory = memory
        self.spool: Spool | None = None
        self._chunk_rows = chunk_rows
        self._closed = False

    @property
    def durable(self) -> bool:
        return self.spool is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def attach_spool(self, spool: Spool) -> None:
        self.spool = spool
        self.sink.durable = True

    def room_for_bytes(self, nbytes: int, table: str | None = None, rows: int = 0) -> bool:
        """Cheap check before decoding a body (`nbytes`/`rows`: what its rows are expected to cost)."""
        if self._closed:
            return False
        if self.spool is not None:
            return self.spool.used_bytes + nbytes <= self.spool.max_bytes and not self.spool.refusing_for_disk()
        return self.queue.room_for_bytes(nbytes, table, rows)

    def never_fits(self, nbytes: int, table: str, rows: int) -> str | None:
        """Why rows charged `nbytes` could never be admitted, however empty the queue (so refusing them
        with a retryable status would have the client retry forever), or None."""
        queue = self.queue
        if rows > queue.lane_max_rows:
            return (
                f"request holds {rows:,} rows, more than the queue ever holds for one signal "
                f"(pipeline.queue_max_rows x pipeline.max_share = {queue.lane_max_rows:,}); send smaller batches"
            )
        if nbytes > queue.lane_max_bytes:
            return (
                f"request is charged {nbytes:,} bytes in the queue, more than it ever holds for one signal "
                f"(pipeline.queue_max_bytes x pipeline.max_share = {queue.lane_max_bytes:,}); send smaller batches"
            )
        if self.spool is not None and nbytes > self.spool.max_bytes:
            return (
                f"request is larger than the spool (spool.max_bytes = {self.spool.max_bytes:,}); send smaller batches"
            )
        return None

    def memory_exhausted(self) -> bool:
        return self.memory is not None and self.memory.over_limit and self.queue.rows > 0

    def admit(self, rows_by_table: Rows, nbytes: int) -> Admission:
        """submit() without a spool (memory durability), which never waits: callers without a spool
        use it directly and spare a coroutine per request."""
        if self._closed:
            return Admission.CLOSED
        if self.memory_exhausted():
            return Admission.MEMORY
        return Admission.ACCEPTED if self.offer(rows_by_table, nbytes) else Admission.FULL

    async def submit(self, rows_by_table: Rows, nbytes: int, record: SpoolRecord | None = None) -> Admission:
        """Admit every row or none. `nbytes` is the memory the rows are charged for."""
        if self.spool is None:
            return self.admit(rows_by_table, nbytes)
        if self._closed:
            return Admission.CLOSED
        if self.memory_exhausted():
            return Admission.MEMORY
        assert record is not None
        try:
            await self.spool.append(record, rows_by_table, nbytes)
        except SpoolFull:
            return Admission.FULL
        except SpoolDiskFull:
            return Admission.DISK_FULL
        except OSError:
            return Admission.SPOOL_ERROR
        return Admission.ACCEPTED

    def offer(self, rows_by_table: Rows, nbytes: int, on_done: Callable[[], None] | None = None) -> bool:
        """Put rows in the queue (split into batch-sized chunks); `on_done` runs once all are stored."""
        if len(rows_by_table) == 1:  # most requests: one table, at most a batch of rows: one chunk
            ((table, rows),) = rows_by_table.items()
            if 0 < len(rows) <= self._chunk_rows:
                return self.queue.offer((Chunk(table, rows, nbytes, Ticket(on_done)),))
        total = sum(len(rows) for rows in rows_by_table.values())
        if total == 0:
            if on_done is not None:
                on_done()
            return True
        ticket = Ticket(on_done)
        chunks: list[Chunk] = []
        step = self._chunk_rows
        for table, rows in rows_by_table.items():
            for start in range(0, len(rows), step):
                part = rows[start : start + step] if len(rows) > step else rows
                chunks.append(Chunk(table, part, nbytes * len(part) // total, ticket))
        return self.queue.offer(chunks)

    def hand_over(self, rows_by_table: Rows, nbytes: int, on_done: Callable[[], None]) -> bool:
        """The spool's way into the queue: refused while the breaker holds writes back."""
        if self.breaker.is_open or self._closed:
            return False
        return self.offer(rows_by_table, nbytes, on_done)

    def can_hand_over(self, nbytes: int) -> bool:
        return not self.breaker.is_open and not self._closed and self.queue.room_for_bytes(nbytes)

    async def start(self) -> None:
        if self.memory is not None:
            self.memory.start()
        await self.sink.start()

    def close(self) -> None:
        """Stop admitting (front ends answer SHUTTING_DOWN from now on)."""
        self._closed = True

    async def stop(self, timeout_s: float) -> None:
        """Flush the spool, then drain the queue within `timeout_s`."""
        self._closed = True
        if self.spool is not None:
            await self.spool.close()
        await self.sink.stop(timeout_s)
        if self.memory is not None:
            await self.memory.stop()

"""The COPY writer pool: N tasks, each with its own connection, draining the queue in batches.

Failure handling, per batch:
- transient errors (database down, restarting, overloaded): retry the same batch after a capped
  exponential backoff with jitter, for as long as it takes (the queue fills meanwhile and the front
  ends refuse with a retryable status) or until the shutdown deadline;
- data errors (the database refuses some values): bisect the batch, store every good row, and move
  each refused row to the dead-letter store with the database's error.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from receiver.pipeline.breaker import CircuitBreaker
from receiver.pipeline.queue import Batch, BoundedQueue
from receiver.storage.errors import ErrorKind, classify, describe
from receiver.storage.writer import DatabaseWriter, row_as_json
from receiver.telemetry.logging import RateLimitedLog, get_logger
from receiver.telemetry.metrics import Metrics


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2  # +/- fraction of the delay, so writers do not retry in lockstep

    def delay(self, attempt: int) -> float:
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, attempt - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class ShutdownDeadline(Exception):
    """The shutdown deadline passed while a batch was still unwritten."""


class DeadLetterFile:
    """Last resort when the database cannot take a refused row even into `dead_letters`."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.path = directory / "dead-letters.jsonl"
        self.max_bytes = max_bytes

    def append(self, table: str, error: str, row_json: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = orjson.dumps({"table": table, "error": error, "row": orjson.Fragment(row_json)}) + b"\n"
        size = self.path.stat().st_size if self.path.exists() else 0
        if size + len(line) > self.max_bytes:
            return False
        with self.path.open("ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return True


class CopySink:
    def __init__(
        self,
        queue: BoundedQueue,
        writers: Sequence[DatabaseWriter],
        columns: Mapping[str, Sequence[str]],
        table_signals: Mapping[str, str],
        metrics: Metrics,
        batch_max_rows: int,
        flush_interval_s: float,
        dead_letter_file: DeadLetterFile,
        breaker: CircuitBreaker,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._queue = queue
        self._writers = list(writers)
        self._columns = columns
        self._table_signals = table_signals
        self._metrics = metrics
        self._batch_max_rows = batch_max_rows
        self._flush_interval_s = flush_interval_s
        self._dead_letters = dead_letter_file
        self._retry = retry or RetryPolicy()
        self._breaker = breaker
        self.durable = False  # spool mode: rows not written by the deadline stay in the spool
        # Set once the database is migrated and partitioned: until then rows wait in the queue rather
        # than fail against missing tables or land in a DEFAULT partition to be moved later.
        self.storage_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._deadline: float | None = None
        self._log = get_logger("sink")
        self._limited = RateLimitedLog(self._log)
        self.lost_rows = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None

    @property
    def writer_count(self) -> int:
        return len(self._writers)

    def connected_writers(self) -> int:
        return sum(1 for w in self._writers if w.connected)

    async def start(self) -> None:
        self._metrics.storage_pool_connections.labels("max").set(len(self._writers))
        self._tasks = [
            asyncio.create_task(self._run(writer), name=f"copy-writer-{i}") for i, writer in enumerate(self._writers)
        ]

    async def stop(self, timeout_s: float) -> None:
        """Drain the (closed) queue within `timeout_s`, then stop the writers."""
        self._queue.close()
        self._deadline = time.monotonic() + timeout_s
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout_s + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for writer in self._writers:
            await writer.close()
        self._metrics.storage_pool_connections.labels("active").set(0)

    async def _run(self, writer: DatabaseWriter) -> None:
        while True:
            batch = await self._queue.take(self._batch_max_rows, self._flush_interval_s)
            if batch is None:
                return
            try:
                await self._store(writer, batch)
            except ShutdownDeadline:
                self._give_up(batch)
                if self.durable:
                    self._queue.release(batch)  # not done: its spool records must survive
                    continue
            self._queue.complete(batch)
            self._metrics.storage_pool_connections.labels("active").set(self.connected_writers())

    def _give_up(self, batch: Batch) -> None:
        rows = len(batch.rows)
        if self.durable:
            self._log.warning(
                "shutdown deadline: rows left in the spool, replayed at next start", table=batch.table, rows=rows
            )
            return
        self.lost_rows += rows
        signal = self._table_signals.get(batch.table)
        if signal:
            self._metrics.send_failed[signal].labels("shutdown").inc(rows)
        self._log.error(
            "rows lost at shutdown: database unreachable until the deadline",
            table=batch.table,
            rows=rows,
            hint="raise pipeline.shutdown_timeout_s or use pipeline.durability = 'spool'",
        )

    async def _store(self, writer: DatabaseWriter, batch: Batch) -> None:
        table = batch.table
        columns = self._columns[table]
        parts: list[Sequence[tuple[Any, ...]]] = [batch.rows]
        attempt = 0
        while parts:
            part = parts.pop()
            await self._allowed()
            started = time.perf_counter()
            try:
                result = await writer.write(table, columns, part)
            except asyncio.CancelledError:
                self._breaker.abandon_probe()
                raise
            except Exception as exc:
                kind = classify(exc)
                if kind is ErrorKind.TRANSIENT:
                    self._breaker.record_failure()
                else:
                    self._breaker.record_success()  # the database answered: it is up
                self._metrics.storage_writes.labels(table, "failure").inc()
                self._metrics.storage_errors.labels(table, kind.value).inc()
                if kind is ErrorKind.DATA:
                    if len(part) == 1:
                        await self._quarantine(writer, table, columns, part[0], exc)
                    else:
                        middle = len(part) // 2
                        parts.append(part[middle:])
                        parts.append(part[:middle])
                    continue
                attempt += 1
                self.consecutive_failures += 1
                self.last_error = describe(exc)
                self._metrics.storage_retries.labels(table).inc()
                delay = self._retry.delay(attempt)
                self._limited.warning(
                    f"retry:{table}",
                    "database write failed; retrying",
                    table=table,
                    rows=len(part),
                    attempt=attempt,
                    retry_in_s=round(delay, 3),
                    error=self.last_error,
                )
                parts.append(part)
                await self._sleep(delay)
                continue
            elapsed = time.perf_counter() - started
            self._breaker.record_success()
            attempt = 0
            self.consecutive_failures = 0
            self._record_success(table, len(part), result.inserted, result.duplicates, elapsed)
            self._metrics.storage_rows_encoded.labels(table, "native" if result.encoded_natively else "asyncpg").inc(
                len(part)
            )

    async def _allowed(self) -> None:
        """Wait for the schema and the circuit breaker, but never past the shutdown deadline."""
        if self._deadline is None:
            await self.storage_ready.wait()
            await self._breaker.allow()
            return
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise ShutdownDeadline
        try:
            await asyncio.wait_for(self._wait_ready_and_allowed(), remaining)
        except TimeoutError:
            raise ShutdownDeadline from None

    async def _wait_ready_and_allowed(self) -> None:
        await self.storage_ready.wait()
        await self._breaker.allow()

    async def _sleep(self, delay: float) -> None:
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise ShutdownDeadline
            delay = min(delay, remaining)
        await asyncio.sleep(delay)

    def _record_success(self, table: str, rows: int, inserted: int, duplicates: int, elapsed: float) -> None:
        m = self._metrics
        m.storage_writes.labels(table, "success").inc()
        m.storage_write_duration.labels(table).observe(elapsed)
        m.storage_batch_size.labels(table).observe(rows)
        m.storage_items_written.labels(table).inc(inserted)
        if duplicates:
            m.storage_duplicates.labels(table).inc(duplicates)
        signal = self._table_signals.get(table)
        if signal:
            m.sent[signal].inc(rows)

    async def _quarantine(
        self, writer: DatabaseWriter, table: str, columns: Sequence[str], row: tuple[Any, ...], exc: BaseException
    ) -> None:
        error = describe(exc)
        sqlstate = getattr(exc, "sqlstate", None)
        row_json = row_as_json(columns, row)
        signal = self._table_signals.get(table)
        try:
            await writer.quarantine(table, row_json, error, sqlstate)
            where = "table"
        except Exception as dlq_exc:
            where = "file" if self._dead_letters.append(table, error, row_json) else "lost"
            self._limited.error(
                f"dlq:{table}",
                "dead-letter table refused a row; used the dead-letter file",
                table=table,
                error=describe(dlq_exc),
                file=str(self._dead_letters.path),
                stored=where,
            )
        if signal:
            self._metrics.send_failed[signal].labels("quarantined" if where != "lost" else "dead_letter_full").inc()
        if where == "lost":
            self.lost_rows += 1
        self._limited.warning(
            f"quarantine:{table}",
            "row refused by the database; quarantined",
            table=table,
            error=error,
            dead_letter=where,
        )

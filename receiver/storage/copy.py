"""Binary COPY of one batch into its table, idempotently.

Fast path: COPY straight into the table. Every table has a unique key (for spans: trace_id, span_id,
ts), so a row that is already stored — a client retry, a spool replay after a crash — makes that COPY
fail with a unique violation. Only then the batch goes the slow way: COPY into a session-private
staging table and `INSERT … SELECT … ON CONFLICT DO NOTHING`, which skips what is already there.
Retries are rare, so the common case pays nothing for idempotency.

On Citus a COPY that spans shards reports any error a worker raised (a unique violation, but also a
NOT NULL or CHECK violation) as a plain XX000 with the worker's message, so XX000 takes the slow way too.
That hides no error: the staging path stores the same rows or raises, and its own error is what the
writer classifies (storage/errors.py). A NOT NULL violation fails the COPY into the local staging table
with 23502 (bisected and quarantined, where the XX000 alone would have been retried forever); an error
that is not about the rows fails again and stays transient. Only plain XX000 is taken: its subclasses
(XX001 data corrupted, XX002 index corrupted) are raised as they are. tests/test_citus.py checks both.

Encoding: the rows stay tuples until here and are encoded per attempt (a bisected part is encoded on its
own): by the native encoder (storage/pgbinary.py), chunk by chunk as `COPY … FROM STDIN (FORMAT binary)`
sends them, or by asyncpg's copy_records_to_table when the encoder is not built, a column has a type it
does not encode, or the batch holds a value it leaves to asyncpg (found in the first chunk before the COPY
starts; further on, the COPY is aborted, which stores nothing, and asyncpg COPYs the batch). Both write
the same binary COPY format, so the database refuses the same rows with the same errors either way. The
staging table is `LIKE` the target: the same column types, so the same encoding goes into it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from receiver.storage import pgbinary


@dataclass(frozen=True, slots=True)
class CopyResult:
    inserted: int
    duplicates: int
    via_staging: bool
    # The rows went out encoded by the native encoder (False: asyncpg's copy_records_to_table).
    encoded_natively: bool = field(default=False, compare=False)


def _staging_name(table: str) -> str:
    return f"_stage_{table}"


async def _stream(rows: list[tuple[Any, ...]], kinds: bytes, first: tuple[bytes, int]) -> AsyncIterator[bytes]:
    """The COPY data chunk by chunk, each encoded as asyncpg asks for it: one chunk in memory at a time."""
    chunk, start = first
    yield chunk
    while start < len(rows):
        encoded = pgbinary.encode_chunk(rows, kinds, start)
        if encoded is None:
            raise pgbinary.Unencodable  # asyncpg aborts the COPY (CopyFail): nothing of it is stored
        chunk, start = encoded
        yield chunk


async def _copy(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    kinds: bytes | None,
    fall_back: bool = True,
) -> bool:
    """COPY `rows` into `table`, encoded natively when `kinds` is given and the rows allow (True), else
    by asyncpg's copy_records_to_table (False). A value the native encoder leaves to asyncpg found past
    the first chunk aborts the native COPY; then asyncpg COPYs the rows, or with `fall_back` false
    Unencodable is raised (inside a transaction, which the aborted COPY aborted too)."""
    if kinds is not None:
        rows = rows if type(rows) is list else list(rows)
        first = pgbinary.encode_chunk(rows, kinds, 0)  # before the COPY starts: most fallbacks abort nothing
        if first is not None:
            try:
                await conn.copy_to_table(
                    table, source=_stream(rows, kinds, first), columns=list(columns), format="binary"
                )
                return True
            except pgbinary.Unencodable:
                if not fall_back:
                    raise
    await conn.copy_records_to_table(table, records=rows, columns=list(columns))
    return False


async def _stage_and_insert(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    kinds: bytes | None,
) -> tuple[int, bool]:
    stage = _staging_name(table)
    column_list = ", ".join(columns)
    async with conn.transaction():
        # Temporary tables live as long as the session; ON COMMIT DELETE ROWS empties it per batch.
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        native = await _copy(conn, stage, columns, rows, kinds, fall_back=False)
        # Counted from RETURNING, not the command tag: Citus's INSERT … SELECT reports the rows selected.
        inserted = await conn.fetchval(
            f"WITH inserted AS (INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {stage}"
            " ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM inserted"
        )
    return int(inserted), native


async def _copy_via_staging(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    kinds: bytes | None,
) -> tuple[int, bool]:
    """(rows inserted, natively encoded) through the staging table."""
    try:
        return await _stage_and_insert(conn, table, columns, rows, kinds)
    except pgbinary.Unencodable:  # the aborted COPY rolled the transaction back: asyncpg encodes the rows
        return await _stage_and_insert(conn, table, columns, rows, None)


async def copy_rows(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    native: bool = True,
) -> CopyResult:
    """Store `rows` so that each distinct row exists exactly once, whatever was stored before.

    `native`: let the native encoder encode the rows when it can (else asyncpg encodes every batch)."""
    kinds = await pgbinary.PLANS.kinds(conn, table, columns) if native else None
    try:
        try:
            # One statement is its own transaction: no BEGIN/COMMIT round trips around it.
            encoded_natively = await _copy(conn, table, columns, rows, kinds)
            return CopyResult(len(rows), 0, False, encoded_natively)
        except asyncpg.UniqueViolationError:
            pass
        except asyncpg.InternalServerError as exc:
            if type(exc) is not asyncpg.InternalServerError:  # XX001/XX002: corruption, not a duplicate
                raise
        inserted, encoded_natively = await _copy_via_staging(conn, table, columns, rows, kinds)
    except asyncpg.PostgresError as exc:
        if kinds is not None and not (exc.sqlstate or "").startswith("23"):
            # Not a constraint on the values: a column may have changed type since the kinds were read.
            pgbinary.PLANS.forget(conn)
        raise
    return CopyResult(inserted, len(rows) - inserted, True, encoded_natively)

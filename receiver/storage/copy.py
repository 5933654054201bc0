"""Binary COPY of one batch into its table, idempotently.

Fast path: COPY straight into the table. Every table has a unique key (for spans: trace_id, span_id,
ts), so a row that is already stored — a client retry, a spool replay after a crash — makes that COPY
fail with a unique violation. Only then the batch goes the slow way: COPY into a session-private
staging table and `INSERT … SELECT … ON CONFLICT DO NOTHING`, which skips what is already there.
Retries are rare, so the common case pays nothing for idempotency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class CopyResult:
    inserted: int
    duplicates: int
    via_staging: bool


def _staging_name(table: str) -> str:
    return f"_stage_{table}"


async def _copy_via_staging(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> int:
    stage = _staging_name(table)
    column_list = ", ".join(columns)
    async with conn.transaction():
        # Temporary tables live as long as the session; ON COMMIT DELETE ROWS empties it per batch.
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table(stage, records=rows, columns=list(columns))
        status = await conn.execute(
            f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {stage} ON CONFLICT DO NOTHING"
        )
    return int(status.rsplit(" ", 1)[1])


async def copy_rows(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> CopyResult:
    """Store `rows` so that each distinct row exists exactly once, whatever was stored before."""
    try:
        # One statement is its own transaction: no BEGIN/COMMIT round trips around it.
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))
        return CopyResult(len(rows), 0, False)
    except asyncpg.UniqueViolationError:
        pass
    inserted = await _copy_via_staging(conn, table, columns, rows)
    return CopyResult(inserted, len(rows) - inserted, True)

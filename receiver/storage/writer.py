"""One writer connection: COPY batches, and put rows the database refuses into `dead_letters`.

A writer owns its connection (no shared pool): COPY holds a connection for the whole transaction and
each writer task writes one batch at a time, so a pool would only add a lock. A broken connection is
dropped and reopened on the next attempt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from receiver.convert.pgvalues import Uuid
from receiver.storage.copy import CopyResult, copy_rows

Connector = Callable[[], Awaitable[asyncpg.Connection]]


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Uuid):
        h = value.bytes.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, tuple):
        return list(value)
    return repr(value)


def row_as_json(columns: Sequence[str], row: Sequence[Any]) -> str:
    """A refused row as a JSON object keyed by column, for the dead-letter store."""
    return orjson.dumps(dict(zip(columns, row, strict=False)), default=_json_default).decode()


class DatabaseWriter:
    def __init__(self, connect: Connector, native_copy: bool = True) -> None:
        self._connect = connect
        self._native_copy = native_copy  # database.copy_encoder = "native"
        self._conn: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await self._connect()
        return self._conn

    async def write(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> CopyResult:
        conn = await self._connection()
        try:
            return await copy_rows(conn, table, columns, rows, native=self._native_copy)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            await self.reset()
            raise

    async def quarantine(self, table: str, row_json: str, error: str, sqlstate: str | None) -> None:
        conn = await self._connection()
        await conn.execute(
            "INSERT INTO dead_letters (table_name, error, sqlstate, row_data) VALUES ($1, $2, $3, $4::jsonb)",
            table,
            error,
            sqlstate,
            row_json,
        )

    async def reset(self) -> None:
        """Drop the connection (after an error that may have left it unusable)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()

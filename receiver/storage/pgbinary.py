"""Binary COPY data for a batch of row tuples, encoded by the native module (receiver/storage/_pgcopy.c).

asyncpg's copy_records_to_table encodes value by value through its codecs (datetimes by Python
arithmetic, Decimals through as_tuple): about a quarter of the receiver's CPU per span. The native
encoder writes the same wire format in one pass, for the column kinds the signal tables use.

The column types come from the database, per connection, the way asyncpg learns them for its own COPY
(the result description of `SELECT <columns> FROM <table> LIMIT 0`), and are read again every
PLAN_MAX_AGE_S: a table with a column of a type not in KIND_BY_OID is never encoded here. A batch with a
value the encoder does not take (a naive or non-UTC datetime, a str uuid, an int out of range, a float in
an integer column, ...) encodes to None and asyncpg encodes that batch as before: its conversions and its
errors stay exactly its own.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from receiver.convert.pgvalues import Uuid, _PythonUuid

try:
    from receiver.storage import _pgcopy
except ImportError:  # built without a C compiler: asyncpg encodes every batch
    _pgcopy = None  # type: ignore[assignment]

NATIVE_AVAILABLE = _pgcopy is not None

# PostgreSQL type OIDs (pg_type) -> the encoder's column kinds. Only these; anything else: asyncpg.
if _pgcopy is not None:
    KIND_BY_OID: dict[int, int] = {
        16: _pgcopy.KIND_BOOL,
        17: _pgcopy.KIND_BYTEA,
        20: _pgcopy.KIND_INT8,
        21: _pgcopy.KIND_INT2,
        23: _pgcopy.KIND_INT4,
        25: _pgcopy.KIND_TEXT,
        701: _pgcopy.KIND_FLOAT8,
        1184: _pgcopy.KIND_TIMESTAMPTZ,
        1700: _pgcopy.KIND_NUMERIC,
        2950: _pgcopy.KIND_UUID,
        3802: _pgcopy.KIND_JSONB,
        1009: _pgcopy.KIND_TEXT_ARRAY,
        1007: _pgcopy.KIND_INT4_ARRAY,
        1016: _pgcopy.KIND_INT8_ARRAY,
        1022: _pgcopy.KIND_FLOAT8_ARRAY,
    }
else:
    KIND_BY_OID = {}

# 16-byte `bytes` subclasses that hold a uuid (the converters' ids): their bytes are the value.
UUID_BYTES_TYPES: tuple[type, ...] = tuple({Uuid, _PythonUuid})


def kinds_for_oids(oids: Sequence[int]) -> bytes | None:
    """The encoder's kind per column, or None when a column has a type it does not encode."""
    kinds = [KIND_BY_OID.get(oid) for oid in oids]
    if not kinds or None in kinds:
        return None
    return bytes(kinds)  # type: ignore[arg-type]


class Unencodable(Exception):
    """A value, past the first chunk, that the native encoder leaves to asyncpg: the COPY is aborted."""


def encode_chunk(rows: list[tuple[Any, ...]], kinds: bytes, start: int) -> tuple[bytes, int] | None:
    """The binary COPY data of `rows` from `start` up to about 256 KiB, cut at a row boundary (the
    signature first when `start` is 0, the trailer last once every row is in), with the next start; or
    None: a value there is one asyncpg must encode."""
    if _pgcopy is None:
        return None
    return _pgcopy.encode(rows, kinds, UUID_BYTES_TYPES, start)


def encode(rows: Sequence[tuple[Any, ...]], kinds: bytes) -> list[bytes] | None:
    """All chunks of `rows` at once (tests, benchmarks), or None: asyncpg must encode these rows."""
    rows = rows if type(rows) is list else list(rows)
    chunks: list[bytes] = []
    start = 0
    while True:
        encoded = encode_chunk(rows, kinds, start)
        if encoded is None:
            return None
        chunk, start = encoded
        chunks.append(chunk)
        if start == len(rows):
            return chunks


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def column_oids(conn: asyncpg.Connection, table: str, columns: Sequence[str]) -> list[int]:
    """The type OID of each column, as PostgreSQL describes `SELECT <columns> FROM <table>`."""
    statement = await conn.prepare(f"SELECT {', '.join(map(_quote, columns))} FROM {table} LIMIT 0")
    return [attribute.type.oid for attribute in statement.get_attributes()]


_PlanKey = tuple[str, tuple[str, ...]]
# Column types are read again after this many seconds on a connection (one describe round trip, ~0.3 ms of
# CPU): a column whose type a migration changes under a running receiver is seen within this time, and
# at once when a COPY fails for a reason that is not a constraint (copy.py calls `forget`). asyncpg's own
# COPY keeps the types it described for the life of the connection.
PLAN_MAX_AGE_S = 30.0


class CopyPlans:
    """The column kinds per (connection, table, columns), read from the database and kept PLAN_MAX_AGE_S.

    A closed connection's entries go with it (weak keys)."""

    def __init__(self, max_age_s: float = PLAN_MAX_AGE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._by_connection: weakref.WeakKeyDictionary[asyncpg.Connection, dict[_PlanKey, tuple[float, bytes | None]]]
        self._by_connection = weakref.WeakKeyDictionary()

    async def kinds(self, conn: asyncpg.Connection, table: str, columns: Sequence[str]) -> bytes | None:
        """The encoder's kinds for `columns` of `table`, or None: asyncpg encodes rows of this table."""
        if not NATIVE_AVAILABLE:
            return None
        plans = self._by_connection.setdefault(conn, {})
        key = (table, tuple(columns))
        now = self._clock()
        plan = plans.get(key)
        if plan is None or now - plan[0] > self._max_age_s:
            plan = plans[key] = (now, kinds_for_oids(await column_oids(conn, table, columns)))
        return plan[1]

    def forget(self, conn: asyncpg.Connection) -> None:
        """Read the types again before the next COPY on `conn`."""
        self._by_connection.pop(conn, None)


PLANS = CopyPlans()

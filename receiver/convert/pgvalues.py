"""How converted values are represented for the COPY encoder.

Conversion builds the exact Python objects asyncpg's binary COPY encoders take, so the writers never
touch a row again. Keeping the choice here means a faster representation can be swapped in one place.

Rows are tuples of atoms (str, numbers, datetime, Decimal, Uuid, None; lists for a few metric columns).
With the native module built, Uuid is a type the garbage collector does not track and `untrack_rows`
untracks such rows as soon as they are made: a queue of 100K rows then costs the collector's full passes
nothing (each pass holds the GIL, and so the event loop, for as long as it walks them).
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class _PythonUuid(bytes):
    """A 16-byte id handed to asyncpg's uuid encoder (which reads `.bytes`) without building uuid.UUID.

    The native module's Uuid (the same, but not tracked by the garbage collector: rows holding only
    untracked values are then skipped by its full passes) replaces it when built."""

    __slots__ = ()

    @property
    def bytes(self) -> builtins.bytes:
        return builtins.bytes(self)

    def __repr__(self) -> str:
        h = self.hex()
        return f"Uuid('{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}')"


def _keep_tracked(rows: list[Any], start: int) -> None:
    """Without the native module, rows stay tracked until the collector's next pass looks at them."""


try:
    from receiver.convert._fastotlp import Uuid
    from receiver.convert._fastotlp import untrack as untrack_rows
except ImportError:  # built without a C compiler
    Uuid = _PythonUuid  # type: ignore[misc]
    untrack_rows = _keep_tracked


def timestamp_from_unix_nanos(nanos: int) -> datetime:
    """OTLP fixed64 nanoseconds -> timezone-aware datetime (PostgreSQL keeps microseconds)."""
    return _EPOCH + (nanos // 1000) * _ONE_US


# timestamptz accepts 4713 BC .. 294276 AD; OTLP nanos (uint64) reach 2554 AD, so only 0 is suspect.
MAX_UNIX_NANOS = (1 << 64) - 1


def int32_from_uint32(flags: int) -> int:
    """OTLP uint32 flags -> the same 32 bits as PostgreSQL's signed `integer` (lossless; `flags & 1`
    still tests bit 0). Only reserved high bits make the stored number negative."""
    return flags - (1 << 32) if flags >= 1 << 31 else flags

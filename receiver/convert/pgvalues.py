"""How converted values are represented for the COPY encoder.

Conversion builds the exact Python objects asyncpg's binary COPY encoders take, so the writers never
touch a row again. Keeping the choice here means a faster representation can be swapped in one place.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class Uuid:
    """A 16-byte id handed to asyncpg's uuid encoder (which reads `.bytes`) without building uuid.UUID."""

    __slots__ = ("bytes",)

    def __init__(self, raw: bytes) -> None:
        self.bytes = raw

    def __repr__(self) -> str:
        h = self.bytes.hex()
        return f"Uuid('{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Uuid) and other.bytes == self.bytes

    def __hash__(self) -> int:
        return hash(self.bytes)


def timestamp_from_unix_nanos(nanos: int) -> datetime:
    """OTLP fixed64 nanoseconds -> timezone-aware datetime (PostgreSQL keeps microseconds)."""
    return _EPOCH + (nanos // 1000) * _ONE_US


# timestamptz accepts 4713 BC .. 294276 AD; OTLP nanos (uint64) reach 2554 AD, so only 0 is suspect.
MAX_UNIX_NANOS = (1 << 64) - 1


def int32_from_uint32(flags: int) -> int:
    """OTLP uint32 flags -> the same 32 bits as PostgreSQL's signed `integer` (lossless; `flags & 1`
    still tests bit 0). Only reserved high bits make the stored number negative."""
    return flags - (1 << 32) if flags >= 1 << 31 else flags

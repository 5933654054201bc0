"""A pure-Python binary COPY encoder: the reference the native one (receiver/storage/_pgcopy.c) is compared
with, byte for byte, in tests/test_pgcopy.py and the `pgcopy` fuzz target.

Written from PostgreSQL's binary formats (the send/recv functions), by other means than the C code where
there is a choice: numerics from Decimal.as_tuple() and integer arithmetic (the C parses str(Decimal)),
timestamps by timedelta arithmetic (the C from the date fields). It takes and refuses the same values:
None for a batch the native encoder leaves to asyncpg.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from receiver.storage import pgbinary

K = pgbinary._pgcopy
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
ARRAY_ELEMENT = {}
if K is not None:
    ARRAY_ELEMENT = {
        K.KIND_TEXT_ARRAY: (25, K.KIND_TEXT),
        K.KIND_INT4_ARRAY: (23, K.KIND_INT4),
        K.KIND_INT8_ARRAY: (20, K.KIND_INT8),
        K.KIND_FLOAT8_ARRAY: (701, K.KIND_FLOAT8),
    }
INT_BITS = {}
if K is not None:
    INT_BITS = {K.KIND_INT2: 16, K.KIND_INT4: 32, K.KIND_INT8: 64}


class Unsupported(Exception):
    """A value the native encoder leaves to asyncpg."""


def _field(payload: bytes) -> bytes:
    if len(payload) > 0x7FFFFFF0:
        raise Unsupported
    return struct.pack(">i", len(payload)) + payload


def _numeric(value: Decimal) -> bytes:
    sign_bit, digits, exponent = value.as_tuple()
    if exponent in ("n", "N"):
        return struct.pack(">hhHH", 0, 0, 0xC000, 0)
    if exponent == "F":
        return struct.pack(">hhHH", 0, 0, 0xF000 if sign_bit else 0xD000, 0)
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    if len(str(coefficient)) > 1000 or not -16383 <= exponent <= 100_000:
        raise Unsupported  # the C encoder's limits (asyncpg refuses a scale beyond 16383)
    dscale = max(0, -exponent)
    if coefficient == 0:
        return struct.pack(">hhHH", 0, 0, 0, dscale)
    shift = exponent % 4  # align the exponent to a multiple of 4: base-10000 digits
    coefficient *= 10**shift
    base_exponent = (exponent - shift) // 4
    groups: list[int] = []
    while coefficient:
        coefficient, group = divmod(coefficient, 10000)
        groups.insert(0, group)
    weight = len(groups) - 1 + base_exponent
    while groups and groups[-1] == 0:
        groups.pop()
    sign = 0x4000 if sign_bit else 0
    return struct.pack(f">hhHH{len(groups)}H", len(groups), weight, sign, dscale, *groups)


def _value(kind: int, value: Any) -> bytes:
    if kind in (K.KIND_TEXT, K.KIND_JSONB):
        if not isinstance(value, str):
            raise Unsupported
        try:
            text = value.encode("utf-8")
        except UnicodeEncodeError:
            raise Unsupported from None
        return _field(b"\x01" + text if kind == K.KIND_JSONB else text)
    if kind in INT_BITS:
        bits = INT_BITS[kind]
        if type(value) is not int or not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise Unsupported
        return _field(value.to_bytes(bits // 8, "big", signed=True))
    if kind == K.KIND_FLOAT8:
        if type(value) not in (int, float):
            raise Unsupported
        try:
            number = float(value)
        except OverflowError:
            raise Unsupported from None
        return _field(struct.pack(">d", number))
    if kind == K.KIND_BOOL:
        if value is not True and value is not False:
            raise Unsupported
        return _field(b"\x01" if value else b"\x00")
    if kind == K.KIND_BYTEA:
        if type(value) is not bytes:
            raise Unsupported
        return _field(value)
    if kind == K.KIND_UUID:
        if type(value) in pgbinary.UUID_BYTES_TYPES and len(value) == 16:
            return _field(bytes(value))
        if type(value) is uuid.UUID:
            return _field(value.bytes)
        raise Unsupported
    if kind == K.KIND_TIMESTAMPTZ:
        if type(value) is not datetime or value.tzinfo is not UTC:
            raise Unsupported
        micros = (value - PG_EPOCH) // ONE_US
        if value == datetime.max.replace(tzinfo=UTC):  # asyncpg's infinity
            micros = 2**63 - 1
        elif value == datetime.min.replace(tzinfo=UTC):  # and -infinity
            micros = -(2**63)
        return _field(struct.pack(">q", micros))
    if kind == K.KIND_NUMERIC:
        if type(value) is not Decimal:
            raise Unsupported
        return _field(_numeric(value))
    element_oid, element_kind = ARRAY_ELEMENT[kind]
    if type(value) not in (list, tuple):
        raise Unsupported
    body = b"".join(b"\xff\xff\xff\xff" if item is None else _value(element_kind, item) for item in value)
    has_nulls = int(any(item is None for item in value))
    dimensions = struct.pack(">ii", len(value), 1) if value else b""
    return _field(struct.pack(">iiI", 1 if value else 0, has_nulls, element_oid) + dimensions + body)


def encode(rows: Sequence[tuple[Any, ...]], kinds: bytes) -> bytes | None:
    """What `receiver.storage.pgbinary.encode(rows, kinds)` must return."""
    out = [SIGNATURE, bytes(8)]
    try:
        for row in rows:
            if type(row) is not tuple or len(row) != len(kinds):
                raise Unsupported
            out.append(struct.pack(">h", len(kinds)))
            out += [b"\xff\xff\xff\xff" if v is None else _value(k, v) for k, v in zip(kinds, row, strict=True)]
    except Unsupported:
        return None
    out.append(b"\xff\xff")
    return b"".join(out)

"""Row tuples with reach, for the binary COPY encoder's tests and fuzz target: edge values of every column
kind the encoder takes (NULLs, extreme numerics and integers, NaN and infinite floats, astral characters,
empty arrays and arrays with NULLs, datetimes at the ends of their range) and, with `exotic`, values it
leaves to asyncpg (naive and non-UTC datetimes, str uuids, out-of-range ints, bools for ints, lone
surrogates, subclasses).
"""

from __future__ import annotations

import random
import struct
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from receiver.convert.pgvalues import Uuid, _PythonUuid
from receiver.storage import pgbinary

K = pgbinary._pgcopy

# The probe table: one column per kind the encoder takes (id first, to read the rows back in order).
PROBE_COLUMNS: dict[str, str] = {
    "id": "bigint",
    "b": "boolean",
    "i2": "smallint",
    "i4": "integer",
    "i8": "bigint",
    "f8": "double precision",
    "t": "text",
    "j": "jsonb",
    "u": "uuid",
    "ts": "timestamptz",
    "n": "numeric",
    "by": "bytea",
    "ta": "text[]",
    "i4a": "integer[]",
    "i8a": "bigint[]",
    "f8a": "double precision[]",
}

DECIMALS = [
    "0", "-0", "0.000", "-0.00", "1", "-1", "0.1", "1.5", "100", "1E+5", "1.23E-7", "-1.23E-7", "0.0001",
    "0.00001", "9999", "10000", "10001", "99999999", "123456789012345678901234567890.123456789",
    "0.000010", "0.000020", "12.3400", "1E-16383", "-9.999E+1000", "1E+99999", "5E+3", "5.0E+3",
    "NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "3.141592653589793238462643383279502884197",
]  # fmt: skip
FLOATS = [0.0, -0.0, 1.5, -2.25, float("nan"), float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308, 1e-300]
TEXTS = ["", "a", "plain ascii text", "é", "日本語", "😀 astral 𝔘𝔫𝔦", "tab\tnew\nline", "'\"\\", "x" * 5000]
JSONS = ["{}", "[]", "null", '"x"', "1.5e300", '{"a": "😀", "b": [1, 2.5, null, true]}', '{"k": "' + "v" * 3000 + '"}']


def _datetime(rng: random.Random) -> datetime:
    edges = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2000, 2, 29, 12, tzinfo=UTC),
        datetime(1900, 3, 1, tzinfo=UTC),
        datetime(2026, 11, 30, 17, 45, 1, 123456, tzinfo=UTC),
    ]
    if rng.random() < 0.4:
        return rng.choice(edges)
    return datetime(1, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(315537897600 * 10**6))


def _decimal(rng: random.Random) -> Decimal:
    if rng.random() < 0.5:
        return Decimal(rng.choice(DECIMALS))
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40)))
    return Decimal(f"{rng.choice('+-')}{digits}E{rng.randint(-60, 60)}")


def _int(rng: random.Random, bits: int) -> int:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return rng.choice([0, 1, -1, low, high, low + 1, high - 1, rng.randint(low, high), rng.randint(-1000, 1000)])


def _uuid(rng: random.Random) -> Any:
    raw = rng.randbytes(16)
    return rng.choice([Uuid(raw), _PythonUuid(raw), uuid.UUID(bytes=raw)])


def _array(rng: random.Random, make: Any) -> list[Any]:
    shape = rng.random()
    if shape < 0.15:
        return []
    if shape < 0.25:
        return [None]
    return [None if rng.random() < 0.15 else make() for _ in range(rng.randint(1, 6))]


def value(rng: random.Random, kind: int) -> Any:
    """A value of `kind` the native encoder takes."""
    if kind == K.KIND_BOOL:
        return rng.random() < 0.5
    if kind == K.KIND_INT2:
        return _int(rng, 16)
    if kind == K.KIND_INT4:
        return _int(rng, 32)
    if kind == K.KIND_INT8:
        return _int(rng, 64)
    if kind == K.KIND_FLOAT8:
        return rng.choice(FLOATS) if rng.random() < 0.7 else rng.choice([rng.uniform(-1e6, 1e6), rng.randint(-99, 99)])
    if kind == K.KIND_TEXT:
        return rng.choice(TEXTS)
    if kind == K.KIND_JSONB:
        return rng.choice(JSONS)
    if kind == K.KIND_UUID:
        return _uuid(rng)
    if kind == K.KIND_TIMESTAMPTZ:
        return _datetime(rng)
    if kind == K.KIND_NUMERIC:
        return _decimal(rng)
    if kind == K.KIND_BYTEA:
        return rng.choice([b"", b"\x00\xff", rng.randbytes(rng.randint(0, 40))])
    if kind == K.KIND_TEXT_ARRAY:
        return _array(rng, lambda: rng.choice(TEXTS))
    if kind == K.KIND_INT4_ARRAY:
        return _array(rng, lambda: _int(rng, 32))
    if kind == K.KIND_INT8_ARRAY:
        return _array(rng, lambda: _int(rng, 64))
    return _array(rng, lambda: rng.choice(FLOATS))


class _Str(str):
    pass


def exotic_value(rng: random.Random, kind: int) -> Any:
    """A value the native encoder may leave to asyncpg (or one of another kind altogether)."""
    choices: list[Any] = [
        True,
        1,
        2**63,
        -(2**63) - 1,
        2**31,
        2**15,
        1.5,
        "text",
        "\ud800 lone surrogate",
        _Str("a str subclass"),
        b"bytes",
        bytearray(b"ba"),
        Decimal("1E+200000"),
        Decimal("1E-20000"),
        Decimal("1" * 1200),
        datetime(2020, 1, 1),  # naive
        datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        "8c4d1f0e-6a53-4a4e-9c1b-0d2b7f0c9a11",
        Uuid(b"short"),
        [["nested"]],
        ["a", 1],
        (1, None),
        {"a": 1},
        10**400,
    ]
    return rng.choice(choices)


def rows(rng: random.Random, kinds: bytes, count: int, exotic: float = 0.0, nulls: float = 0.2) -> list[tuple]:
    """`count` rows for `kinds`; each value NULL with chance `nulls`, exotic with chance `exotic`."""
    out = []
    for _ in range(count):
        row = []
        for kind in kinds:
            roll = rng.random()
            if roll < nulls:
                row.append(None)
            elif roll < nulls + exotic:
                row.append(exotic_value(rng, kind))
            else:
                row.append(value(rng, kind))
        out.append(tuple(row))
    return out


def value_from_bytes(kind: int, raw: bytes) -> Any:
    """A value of `kind` made from fuzzer bytes (it may be one the encoder leaves to asyncpg)."""
    if kind in (K.KIND_TEXT, K.KIND_JSONB):
        return raw.decode("utf-8", "surrogatepass") if _utf8(raw) else raw.decode("latin-1")
    if kind == K.KIND_NUMERIC:
        try:
            return Decimal(raw.decode("ascii"))
        except (UnicodeDecodeError, ArithmeticError, ValueError):
            return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-(len(raw) % 40))
    if kind in (K.KIND_INT2, K.KIND_INT4, K.KIND_INT8):
        return int.from_bytes(raw[:9], "big", signed=True)
    if kind == K.KIND_FLOAT8:
        return struct.unpack(">d", raw[:8].ljust(8, b"\0"))[0]
    if kind == K.KIND_TIMESTAMPTZ:
        micros = int.from_bytes(raw[:8], "big") % (315537897600 * 10**6)
        return datetime(1, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    if kind == K.KIND_UUID:
        return Uuid(raw[:16]) if len(raw) != 17 else uuid.UUID(bytes=raw[:16])
    if kind == K.KIND_BYTEA:
        return raw
    if kind == K.KIND_BOOL:
        return bool(raw and raw[0] & 1)
    element = {K.KIND_TEXT_ARRAY: K.KIND_TEXT, K.KIND_INT4_ARRAY: K.KIND_INT4, K.KIND_INT8_ARRAY: K.KIND_INT8}
    item = element.get(kind, K.KIND_FLOAT8)
    return [value_from_bytes(item, piece) if piece else None for piece in raw.split(b",")]


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True

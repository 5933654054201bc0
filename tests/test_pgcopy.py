"""The native binary COPY encoder (receiver/storage/_pgcopy.c, issue 17) against the pure-Python reference
(byte for byte) and against asyncpg's copy_records_to_table through a real PostgreSQL: the same rows read
back identical, the rows the database refuses fail with the same error, the values it leaves to asyncpg
keep asyncpg's behaviour, and a column type it does not know (or that changed) is seen.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from receiver import schema
from receiver.convert.logs_metrics_bytes import convert_logs_bytes, convert_metrics_bytes
from receiver.convert.traces_bytes import convert_traces_bytes, native_available
from receiver.storage import pgbinary
from receiver.storage.copy import _copy, copy_rows
from receiver.storage.errors import ErrorKind, classify
from receiver.storage.migrate import load_migrations, migrate
from receiver.storage.writer import DatabaseWriter
from tests.fuzz.targets import RandomTelemetry
from tests.support import copyrows, generate
from tests.support import pgcopy_reference as reference
from tests.support.differential import OPTIONS

pytestmark = pytest.mark.skipif(not pgbinary.NATIVE_AVAILABLE, reason="the native COPY encoder is not built")

PROBE = list(copyrows.PROBE_COLUMNS)


def probe_kinds() -> bytes:
    kinds = pgbinary.kinds_for_oids(
        [{"bigint": 20, "boolean": 16, "smallint": 21, "integer": 23, "double precision": 701, "text": 25,
          "jsonb": 3802, "uuid": 2950, "timestamptz": 1184, "numeric": 1700, "bytea": 17, "text[]": 1009,
          "integer[]": 1007, "bigint[]": 1016, "double precision[]": 1022}[t] for t in copyrows.PROBE_COLUMNS.values()]
    )  # fmt: skip
    assert kinds is not None
    return kinds


def probe_rows(rng: random.Random, count: int, exotic: float = 0.0) -> list[tuple[Any, ...]]:
    """Rows for the probe table: an id, then a value (or NULL) of every kind."""
    kinds = probe_kinds()
    return [(i, *row[1:]) for i, row in enumerate(copyrows.rows(rng, kinds, count, exotic=exotic))]


async def create_probe(conn: asyncpg.Connection, name: str) -> None:
    columns = ", ".join(f"{column} {kind}" for column, kind in copyrows.PROBE_COLUMNS.items())
    await conn.execute(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({columns})")


def test_the_encoder_matches_the_reference_byte_for_byte():
    rng = random.Random(17)
    kinds = bytes(sorted(set(probe_kinds())))  # every kind once
    encoded = refused = 0
    for _ in range(600):
        rows = copyrows.rows(rng, kinds, rng.randint(0, 6), exotic=rng.choice((0.0, 0.0, 0.02, 0.2)))
        chunks = pgbinary.encode(rows, kinds)
        expected = reference.encode(rows, kinds)
        assert (b"".join(chunks) if chunks is not None else None) == expected, rows
        encoded += chunks is not None
        refused += chunks is None
    assert encoded > 200 and refused > 50, (encoded, refused)
    # A large batch comes in chunks of about CHUNK_BYTES, cut at row boundaries.
    rows = [(i, "x" * 1000) for i in range(2000)]
    chunks = pgbinary.encode(rows, probe_kinds()[:1] + probe_kinds()[6:7])
    assert chunks is not None and len(chunks) > 4
    assert all(len(c) < pgbinary._pgcopy.CHUNK_BYTES + 1100 for c in chunks)
    assert b"".join(chunks) == reference.encode(rows, probe_kinds()[:1] + probe_kinds()[6:7])


async def test_rows_read_back_as_asyncpg_stores_them(module_database):
    conn = await module_database.connect()
    try:
        for name in ("probe_asyncpg", "probe_native"):
            await create_probe(conn, name)
        assert pgbinary.kinds_for_oids(await pgbinary.column_oids(conn, "probe_native", PROBE)) == probe_kinds()
        rows = probe_rows(random.Random(5), 3000)
        await conn.copy_records_to_table("probe_asyncpg", records=rows, columns=PROBE)
        assert await _copy(conn, "probe_native", PROBE, rows, probe_kinds())  # natively encoded
        want = [r[0] for r in await conn.fetch("SELECT whole::text FROM probe_asyncpg whole ORDER BY id")]
        got = [r[0] for r in await conn.fetch("SELECT whole::text FROM probe_native whole ORDER BY id")]
        assert len(got) == len(rows)
        for row, expected, actual in zip(rows, want, got, strict=True):
            assert actual == expected, row
    finally:
        await conn.close()


# Positions of each table's primary key in its row (traces: ts, trace_id, span_id; the others: ts, id).
PRIMARY_KEYS = {schema.TRACES_TABLE: (0, 2, 3), schema.METRICS_TABLE: (0, 2), schema.LOGS_TABLE: (0, 2)}


def _converted_rows(table: str, rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    telemetry = RandomTelemetry(rng)
    options = dataclasses.replace(OPTIONS, received_unix_nanos=generate.T0)
    while len(rows) < count:
        if table == schema.TRACES_TABLE:
            rows += convert_traces_bytes(generate.RandomRequests(rng).request().SerializeToString(), options).rows
        elif table == schema.METRICS_TABLE:
            rows += convert_metrics_bytes(telemetry.metrics_request().SerializeToString(), options).rows
        else:
            rows += convert_logs_bytes(telemetry.logs_request().SerializeToString(), options).rows
    key = PRIMARY_KEYS[table]
    unique = {tuple(row[i] for i in key): row for row in rows}
    return list(unique.values())


@pytest.mark.skipif(not native_available(), reason="the native converter is not built")
async def test_converted_rows_of_every_signal_table_go_native_and_read_back_alike(database):
    conn = await database.connect()
    try:
        await migrate(conn, "native", load_migrations())
        rng = random.Random(11)
        for table, columns in schema.TABLE_COLUMNS.items():
            rows = _converted_rows(table, rng, 300)
            read = f"SELECT ({', '.join(columns)})::text AS r FROM {table} ORDER BY 1"
            result = await copy_rows(conn, table, columns, rows)
            assert (result.inserted, result.encoded_natively) == (len(rows), True), table
            native = [r[0] for r in await conn.fetch(read)]
            # Duplicates take the staging path, with the same encoding.
            again = await copy_rows(conn, table, columns, rows[:50])
            assert (again.via_staging, again.duplicates, again.encoded_natively) == (True, 50, True)
            await conn.execute(f"TRUNCATE {table}")
            await conn.copy_records_to_table(table, records=rows, columns=list(columns))
            assert [r[0] for r in await conn.fetch(read)] == native, table
    finally:
        await conn.close()


POISON = {
    "NUL in text": ("t", "a\x00b"),
    "NUL in jsonb": ("j", '{"a": "\x00"}'),
    "invalid json": ("j", "{not json"),
    "NUL in a text array": ("ta", ["ok", "\x00"]),
}


@pytest.mark.parametrize("poison", sorted(POISON))
async def test_rows_the_database_refuses_fail_the_same_way(module_database, poison):
    conn = await module_database.connect()
    try:
        await create_probe(conn, "probe_poison")
        column, value = POISON[poison]
        good = probe_rows(random.Random(3), 4)
        bad = list(good[2])
        bad[PROBE.index(column)] = value
        rows = [*good[:2], tuple(bad), *good[3:]]
        errors = []
        for native in (False, True):
            assert pgbinary.encode(rows, probe_kinds()) is not None  # the native encoder takes the values
            with pytest.raises(asyncpg.PostgresError) as caught:
                await _copy(conn, "probe_poison", PROBE, rows, probe_kinds() if native else None)
            errors.append((type(caught.value), caught.value.sqlstate))
        assert errors[0] == errors[1]
        assert classify(caught.value) is ErrorKind.DATA  # bisected and quarantined by the sink
        assert await conn.fetchval("SELECT count(*) FROM probe_poison") == 0
    finally:
        await conn.close()


async def test_values_left_to_asyncpg_keep_its_behaviour(module_database):
    conn = await module_database.connect()
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS kept; CREATE TABLE kept (id bigint PRIMARY KEY, ts timestamptz, n bigint)"
        )
        columns = ["id", "ts", "n"]
        naive = [(1, datetime(2024, 5, 1, 12), 1), (2, datetime(2024, 5, 1, 12, tzinfo=UTC), 2)]
        result = await copy_rows(conn, "kept", columns, naive)
        assert (result.inserted, result.encoded_natively) == (2, False)
        fine = await copy_rows(conn, "kept", columns, [(3, datetime(2024, 5, 1, tzinfo=UTC), 3)])
        assert fine.encoded_natively
        # An int out of range: asyncpg's own error, as before (the sink bisects and quarantines the row).
        overflow = [(4, None, 2**63)]
        with pytest.raises(Exception) as by_asyncpg:
            await conn.copy_records_to_table("kept", records=overflow, columns=columns)
        with pytest.raises(Exception) as by_copy_rows:
            await copy_rows(conn, "kept", columns, overflow)
        assert (type(by_copy_rows.value), str(by_copy_rows.value)) == (type(by_asyncpg.value), str(by_asyncpg.value))
        assert classify(by_copy_rows.value) is ErrorKind.DATA
    finally:
        await conn.close()


async def test_a_value_past_the_first_chunk_aborts_the_native_copy_and_asyncpg_stores_the_batch(module_database):
    """The first chunk is encoded before the COPY starts; a value the encoder leaves to asyncpg further on
    aborts the streaming COPY (nothing of it stored) and asyncpg COPYs the batch, in the staging path too."""
    conn = await module_database.connect()
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS late; CREATE TABLE late (id bigint PRIMARY KEY, ts timestamptz, t text)"
        )
        columns = ["id", "ts", "t"]
        moment = datetime(2024, 5, 1, tzinfo=UTC)
        rows = [(i, moment, "x" * 1000) for i in range(1000)]  # ~1 MB: several chunks
        rows[900] = (900, datetime(2024, 5, 1), "naive")  # asyncpg reads it as local time
        first = pgbinary.encode_chunk(rows, pgbinary.kinds_for_oids([20, 1184, 25]), 0)
        assert first is not None and first[1] < 900
        result = await copy_rows(conn, "late", columns, rows)
        assert (result.inserted, result.via_staging, result.encoded_natively) == (1000, False, False)
        again = await copy_rows(conn, "late", columns, rows)  # duplicates: the staging path, in a transaction
        assert (again.inserted, again.duplicates, again.encoded_natively) == (0, 1000, False)
        assert await conn.fetchval("SELECT count(*) FROM late") == 1000
        assert await conn.fetchval("SELECT t FROM late WHERE id = 900") == "naive"
    finally:
        await conn.close()


async def test_a_column_type_it_does_not_encode_leaves_the_table_to_asyncpg(module_database):
    conn = await module_database.connect()
    try:
        await conn.execute("DROP TABLE IF EXISTS other; CREATE TABLE other (id bigint, addr inet, name varchar(10))")
        result = await copy_rows(conn, "other", ["id", "addr", "name"], [(1, "10.0.0.1", "x")])
        assert (result.inserted, result.encoded_natively) == (1, False)
        assert await pgbinary.PLANS.kinds(conn, "other", ["id", "addr", "name"]) is None
        assert await pgbinary.PLANS.kinds(conn, "other", ["id"]) is not None  # a column set of known types
    finally:
        await conn.close()


async def test_a_changed_column_type_is_read_again(module_database):
    conn = await module_database.connect()
    now = [0.0]
    plans = pgbinary.CopyPlans(max_age_s=30, clock=lambda: now[0])
    try:
        await conn.execute("DROP TABLE IF EXISTS changing; CREATE TABLE changing (id bigint, x bigint)")
        before = await plans.kinds(conn, "changing", ["id", "x"])
        await conn.execute("ALTER TABLE changing ALTER COLUMN x TYPE numeric")
        now[0] = 29.0
        assert await plans.kinds(conn, "changing", ["id", "x"]) == before  # within the plan's age
        now[0] = 31.0
        after = await plans.kinds(conn, "changing", ["id", "x"])
        assert after is not None and after[1] == pgbinary.KIND_BY_OID[1700]
        await conn.execute("ALTER TABLE changing ALTER COLUMN x TYPE bigint")
        plans.forget(conn)  # what copy_rows does when a native COPY fails for a reason other than a constraint
        assert await plans.kinds(conn, "changing", ["id", "x"]) == before
        # And copy_rows itself: a COPY the database refuses (not a constraint) makes it read the types again.
        await conn.execute("DROP TABLE IF EXISTS stale; CREATE TABLE stale (id bigint, x uuid)")
        project = uuid.UUID(int=7)
        await copy_rows(conn, "stale", ["id", "x"], [(1, project)])
        await conn.execute("ALTER TABLE stale ALTER COLUMN x TYPE text USING x::text")
        with pytest.raises(asyncpg.PostgresError):
            await copy_rows(conn, "stale", ["id", "x"], [(2, project)])  # 16 uuid bytes as text: refused
        result = await copy_rows(conn, "stale", ["id", "x"], [(3, "now text")])
        assert (result.inserted, result.encoded_natively) == (1, True)
    finally:
        await conn.close()


async def test_copy_encoder_asyncpg_turns_the_native_encoder_off(module_database):
    """database.copy_encoder = "asyncpg": every batch through copy_records_to_table, as before issue 17."""
    conn = await module_database.connect()
    await conn.execute("DROP TABLE IF EXISTS switched; CREATE TABLE switched (id bigint, t text)")
    await conn.close()
    rows = [(1, "a"), (2, "b")]
    for native_copy in (False, True):
        writer = DatabaseWriter(module_database.connect, native_copy)
        try:
            result = await writer.write("switched", ["id", "t"], rows)
        finally:
            await writer.close()
        assert (result.inserted, result.encoded_natively) == (2, native_copy)

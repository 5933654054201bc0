"""PostgreSQL's cost per span must stay flat as the day's partition grows (the short version of
`python -m benchmarks.growth` and `make soak`).

What is measured is the number of index pages an insert visits (pg_statio: buffer hits + reads per
inserted row, per index). It is the cost that grew without bound with migration 004's hash indexes
(every row of a hot user walked that user's ever-longer overflow chain) and it does not depend on how
busy the machine is, so it can be asserted. The same measurement is run on the old index set to show
it sees the growth it is there to catch.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from benchmarks.growth import VARIANTS, index_page_visits
from receiver.storage import partitions
from receiver.storage.migrate import load_migrations, migrate
from tests.support.spans import copy_spans, span_row

FILL_ROWS = 80_000
PROBE_ROWS = 10_000


def _rows(rng: random.Random, start: datetime, count: int) -> list[tuple]:
    """Spans one second of simulated time apart per 100, a third of them by one hot user (and session),
    the rest spread over 2,000 users: the shape of an LLM product's traffic."""
    rows = []
    for i in range(count):
        user = "hot-user" if rng.random() < 0.33 else f"user-{rng.randrange(2000)}"
        rows.append(span_row(start + timedelta(milliseconds=10 * i), user_id=user))
    return rows


async def _visits_first_and_later(conn, table_sql: tuple[str, ...]) -> tuple[dict[str, float], dict[str, float]]:
    for statement in table_sql:
        await conn.execute(statement)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await partitions.create_day(conn, "llm_traces", day.date(), "llm_traces_default", 10_000)
    table = partitions.partition_name("llm_traces", day.date())
    rng = random.Random(14)
    start = day + timedelta(hours=1)

    async def visits(rows: list[tuple]) -> dict[str, float]:
        before = await index_page_visits(conn, table)
        await copy_spans(conn, rows)
        after = await index_page_visits(conn, table)
        return {name: (after[name][0] - before.get(name, (0, 0))[0]) / len(rows) for name in after}

    first = await visits(_rows(rng, start, PROBE_ROWS))
    filled = _rows(rng, start + timedelta(seconds=PROBE_ROWS // 100), FILL_ROWS)
    for i in range(0, len(filled), 5000):
        await copy_spans(conn, filled[i : i + 5000])
    later = await visits(_rows(rng, start + timedelta(seconds=(PROBE_ROWS + FILL_ROWS) // 100), PROBE_ROWS))
    return first, later


async def test_index_pages_visited_per_row_stay_flat_as_the_partition_grows(database):
    conn = await database.connect()
    try:
        await migrate(conn, "native", load_migrations())
        first, later = await _visits_first_and_later(conn, ())
    finally:
        await conn.close()
    for index in ("user_ts_idx", "session_ts_idx", "pkey"):
        name = next(n for n in first if n.startswith(index))
        # A btree gains at most a level as it grows 13x; the hash indexes grew ~30x here (next test).
        assert later[name] <= first[name] + 1.5, (name, first[name], later[name])


async def test_the_measurement_sees_a_hash_index_on_a_hot_key_grow(database):
    """The same measurement on migration 004's hash indexes: page visits of the user index per row grow
    with the hot user's rows (the overflow chain), so the flat result above means something."""
    conn = await database.connect()
    try:
        await migrate(conn, "native", load_migrations())
        first, later = await _visits_first_and_later(conn, VARIANTS["hash-ids"])
    finally:
        await conn.close()
    assert later["user_id_hash"] > 3 * first["user_id_hash"], (first["user_id_hash"], later["user_id_hash"])


async def test_migration_009_replaces_the_hash_indexes_and_shortens_over_long_ids(database):
    """Upgrading a version-008 database: rows kept, btree (id, ts) indexes in place of the hash ones, and
    ids too long for a btree entry (possible before the receiver capped them) shortened so the index
    could be built."""
    conn = await database.connect()
    try:
        await migrate(conn, "native", [m for m in load_migrations() if m.version <= 8])
        now = datetime.now(UTC)
        long_user = "u" * 5000
        rows = [span_row(now - timedelta(days=1), user_id=long_user), span_row(now, user_id="u2")]
        await copy_spans(conn, rows, before_tenancy=True)
        assert (await migrate(conn, "native")).applied[0] == "009_span_key_indexes"
        indexes = {
            r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'llm_traces'")
        }
        assert {"llm_traces_user_ts_idx", "llm_traces_session_ts_idx"} <= indexes
        assert not {"llm_traces_user_id_hash", "llm_traces_session_id_hash"} & indexes
        users = {r["user_id"] for r in await conn.fetch("SELECT user_id FROM llm_traces")}
        shortened = next(u for u in users if u != "u2")
        assert "u2" in users and shortened.startswith("u" * 120) and len(shortened.encode()) <= 512
    finally:
        await conn.close()

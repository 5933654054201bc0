"""Keep the BRIN indexes of the partitions (native) or chunks (TimescaleDB) receiving writes summarized.

The rollups select the spans ingested since their watermark through `brin (ingested_at)`. A BRIN
range that is not summarized yet matches every query, so its pages are read by every rollup pass.
`autosummarize = on` asks autovacuum to summarize each range as it fills, but its work-item queue holds
256 requests per database: at 10K spans/s (about 60 ranges of 32 pages a second) almost all are dropped
("request for BRIN range summarization ... was not recorded"). Then only VACUUM summarizes, and insert-
triggered autovacuum comes less often as a partition grows (a fraction of its rows). Between two vacuums,
every rollup pass re-read all the pages written since the last one: in a 30-minute soak at 10K spans/s,
a minute's pass read 800,000 pages (6 GB) and took 28 s, more with every minute.

So before each pass the maintenance task summarizes the new ranges of the recent partitions itself:
each page is then read once for its summary, and a pass reads about what was ingested since the last.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import asyncpg

from receiver.storage.partitions import brin_indexes, list_partitions

RECENT = timedelta(days=1)  # pieces whose range ends later than this before now, or starts within it after


def recent_partitions(ranges: dict[str, tuple[datetime, datetime]], now: datetime) -> list[str]:
    """The partitions current writes go to: those whose [start, end) is within RECENT of now."""
    return sorted(name for name, (lo, hi) in ranges.items() if hi > now - RECENT and lo < now + RECENT)


# TimescaleDB: the chunks of a hypertable that current writes go to (compressed ones take no inserts
# into their BRIN-indexed heap worth summarizing). Empty for a table that is not a hypertable.
_RECENT_CHUNKS = """
SELECT format('%I.%I', c.chunk_schema, c.chunk_name) AS chunk
FROM timescaledb_information.chunks c
WHERE c.hypertable_name = $1 AND c.range_end > $2 AND c.range_start < $3 AND NOT c.is_compressed
ORDER BY 1
"""


async def is_hypertable(conn: asyncpg.Connection, table: str) -> bool:
    """Whether `table` is a TimescaleDB hypertable (False where the extension is not installed)."""
    if await conn.fetchval("SELECT to_regclass('_timescaledb_catalog.hypertable') IS NULL"):
        return False
    found = "SELECT EXISTS (SELECT 1 FROM _timescaledb_catalog.hypertable WHERE table_name = $1)"
    return bool(await conn.fetchval(found, table))


async def recent_pieces(
    conn: asyncpg.Connection, table: str, now: datetime, hypertable: bool | None = None
) -> list[str]:
    """The partitions (and DEFAULT) or chunks of `table` that current writes go to (`hypertable`: None
    asks the catalog)."""
    if hypertable is None:
        hypertable = await is_hypertable(conn, table)
    if hypertable:
        return [r["chunk"] for r in await conn.fetch(_RECENT_CHUNKS, table, now - RECENT, now + RECENT)]
    found = await list_partitions(conn, table)
    return recent_partitions(found.ranges, now) + ([found.default] if found.default else [])


async def summarize_new_ranges(
    conn: asyncpg.Connection, table: str, now: datetime, lock_timeout_ms: int = 100, hypertable: bool | None = None
) -> int:
    """Summarize the unsummarized BRIN ranges of `table`'s recent partitions or chunks; returns how
    many. A piece that autovacuum holds (it summarizes too) is skipped after `lock_timeout_ms`.
    Raises asyncpg.InsufficientPrivilegeError when this role does not own the table."""
    names: Iterable[str] = await recent_pieces(conn, table, now, hypertable)
    indexes = await brin_indexes(conn, list(names))
    summarized = 0
    for index in indexes:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                summarized += int(await conn.fetchval("SELECT brin_summarize_new_values($1::regclass)", index))
        except asyncpg.LockNotAvailableError:
            continue  # autovacuum is on it
    return summarized

"""Keep the BRIN indexes of the partitions receiving writes summarized.

The native rollups select the spans ingested since their watermark through `brin (ingested_at)`. A BRIN
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

from receiver.storage.partitions import list_partitions

RECENT = timedelta(days=1)  # partitions whose range ends later than this before now, or starts within it after

_BRIN_INDEXES = """
SELECT ix.indexrelid::regclass::text AS index
FROM pg_index ix
JOIN pg_class ic ON ic.oid = ix.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE am.amname = 'brin' AND ix.indrelid = ANY($1::regclass[])
ORDER BY 1
"""


def recent_partitions(ranges: dict[str, tuple[datetime, datetime]], now: datetime) -> list[str]:
    """The partitions current writes go to: those whose [start, end) is within RECENT of now."""
    return sorted(name for name, (lo, hi) in ranges.items() if hi > now - RECENT and lo < now + RECENT)


async def summarize_new_ranges(conn: asyncpg.Connection, table: str, now: datetime, lock_timeout_ms: int = 100) -> int:
    """Summarize the unsummarized BRIN ranges of `table`'s recent partitions (and DEFAULT); returns how
    many. A partition that autovacuum holds (it summarizes too) is skipped after `lock_timeout_ms`.
    Raises asyncpg.InsufficientPrivilegeError when this role does not own the table."""
    found = await list_partitions(conn, table)
    names: Iterable[str] = recent_partitions(found.ranges, now) + ([found.default] if found.default else [])
    indexes = [r["index"] for r in await conn.fetch(_BRIN_INDEXES, list(names))]
    summarized = 0
    for index in indexes:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                summarized += int(await conn.fetchval("SELECT brin_summarize_new_values($1::regclass)", index))
        except asyncpg.LockNotAvailableError:
            continue  # autovacuum is on it
    return summarized

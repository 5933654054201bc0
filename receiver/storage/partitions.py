"""Range partitions of the native flavor: created ahead, filled from DEFAULT, dropped for retention.

llm_traces, llm_metrics and llm_logs are `PARTITION BY RANGE (ts)` with a DEFAULT partition (migrations
001/002). This module keeps one partition per `partition_hours` of UTC time (24 by default: one per
day, `<table>_pYYYYMMDD`; shorter ones are `<table>_pYYYYMMDD_HH`). Shorter partitions keep the
partition that receives the writes — and its indexes — small enough to stay in memory at high ingest
rates (README, "Sizing partitions"); the lengths tile a day, and a changed length only applies to
time that no partition covers yet:

- ahead: today and the next `days_ahead` days are covered before their rows arrive;
- late and backfilled rows (time without a partition) land in DEFAULT, so nothing is ever refused for
  its date. PostgreSQL refuses to create a partition whose range has rows in DEFAULT, so for such a
  slot one transaction creates the table, moves the slot's rows out of DEFAULT into it, and attaches it;
- retention: partitions that end before the retention cutoff are dropped (whole files: no DELETE, no
  bloat), and rows of expired slots found in DEFAULT are deleted.

Safe while writers COPY. A COPY routes each row with the partition layout it read when it started, so
a row routed to DEFAULT by a COPY that began before its partition was attached would then violate
DEFAULT's new constraint and fail its batch. So a partition is attached under a SHARE lock on the
parent table alone (`LOCK TABLE ONLY`): it waits for the COPY transactions in flight (one batch each)
and holds new ones back for the few milliseconds the attach takes; readers are not blocked. The new
table is created first as a plain table with a CHECK constraint matching its range, so ATTACH does not
scan it; DEFAULT is locked exclusively, and only its rows of that range are moved. Every DDL runs
under `lock_timeout`, so maintenance never queues behind a long transaction while writers queue behind
it; a step that times out is retried next pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

PARTITIONED_TABLES = ("llm_traces", "llm_metrics", "llm_logs")
# Rows dated further ahead than this (a client with a broken clock) stay in DEFAULT: a partition for
# them would outlive every retention period.
MAX_FUTURE_DAYS = 366
# Partition lengths that tile a UTC day exactly, so every partition starts at a multiple of its length
# after midnight and a changed setting never asks for a partition overlapping an existing one.
PARTITION_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def chunk_intervals(partition_hours: int) -> dict[str, timedelta]:
    """TimescaleDB flavor: the chunk interval of each hypertable for a partition length. Metric points
    keep chunks of at most an hour (migration 002), whatever the setting."""
    length = timedelta(hours=partition_hours)
    return {"llm_traces": length, "llm_metrics": min(length, timedelta(hours=1)), "llm_logs": length}


def _as_moment(start: date | datetime) -> datetime:
    if isinstance(start, datetime):
        return start.astimezone(UTC)
    return datetime.combine(start, time(0), UTC)


def partition_name(table: str, start: date | datetime, length: timedelta = _DAY) -> str:
    """`<table>_pYYYYMMDD` for a whole UTC day, `<table>_pYYYYMMDD_HH` for a partition starting at HH."""
    moment = _as_moment(start)
    if length == _DAY and moment.hour == 0:
        return f"{table}_p{moment:%Y%m%d}"
    return f"{table}_p{moment:%Y%m%d_%H}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), UTC)
    return start, start + _DAY


def _literal(moment: datetime) -> str:
    return f"'{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}+00'"


def utc_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


def midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(0), UTC)


def slot_start(moment: datetime, length: timedelta) -> datetime:
    """The start of the partition of `length` that holds `moment` (lengths tile the UTC day)."""
    day = midnight(moment)
    return day + (moment.astimezone(UTC) - day) // length * length


@dataclass
class TablePartitions:
    """What exists for one partitioned table."""

    table: str
    ranges: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)  # ours: name -> [start, end)
    default: str | None = None  # the DEFAULT partition's name
    others: list[str] = field(default_factory=list)  # partitions not made by us (left alone)

    @property
    def days(self) -> set[date]:
        """UTC days that have a whole-day partition of ours."""
        return {lo.date() for lo, hi in self.ranges.values() if hi - lo == _DAY and lo.hour == 0}

    def covered_until(self, start: datetime) -> datetime:
        """How far from `start` the partitions cover time without a gap."""
        end = start
        for lo, hi in sorted(self.ranges.values()):
            if lo <= end < hi:
                end = hi
        return end

    def gaps(self, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        """Parts of [lo, hi) no partition covers (a changed partition length leaves partial days)."""
        found, cursor = [], lo
        for start, end in sorted(self.ranges.values()):
            if end <= cursor or start >= hi:
                continue
            if start > cursor:
                found.append((cursor, start))
            cursor = max(cursor, end)
        if cursor < hi:
            found.append((cursor, hi))
        return found


@dataclass
class PartitionReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rows_moved: dict[str, int] = field(default_factory=dict)  # partition -> rows moved in from DEFAULT
    rows_expired: dict[str, int] = field(default_factory=dict)  # table -> expired rows deleted from DEFAULT
    deferred: list[str] = field(default_factory=list)  # work left for the next pass (lock timeout, budget)


async def list_partitions(conn: asyncpg.Connection, table: str) -> TablePartitions:
    rows = await conn.fetch(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = $1::regclass
        """,
        table,
    )
    found = TablePartitions(table)
    pattern = re.compile(rf"^{re.escape(table)}_p\d{{8}}(_\d{{2}})?$")
    for row in rows:
        name, bound = row["relname"], row["bound"]
        if bound == "DEFAULT":
            found.default = name
            continue
        bounds = _BOUNDS.search(bound or "")
        if pattern.match(name) and bounds:
            found.ranges[name] = (
                datetime.fromisoformat(bounds.group(1)).astimezone(UTC),
                datetime.fromisoformat(bounds.group(2)).astimezone(UTC),
            )
        else:
            found.others.append(name)
    return found


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        table,
    )
    return [f'"{r["attname"]}"' for r in rows]


async def create_partition(
    conn: asyncpg.Connection, table: str, lo: datetime, hi: datetime, default: str | None, lock_timeout_ms: int
) -> int:
    """Create and attach `table`'s partition for [lo, hi), moving those rows out of DEFAULT.
    Returns the number of rows moved. One transaction: on any error nothing changes."""
    name = partition_name(table, lo, hi - lo)
    lo_sql, hi_sql = _literal(lo), _literal(hi)
    moved = 0
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        # Lock order parent -> DEFAULT, the order writers take them in, so we cannot deadlock with them.
        # SHARE on the parent: no COPY that started with the old partition layout is still running.
        await conn.execute(f"LOCK TABLE ONLY {table} IN SHARE MODE")
        if default is not None:
            await conn.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
        # COMPRESSION: the parent's TOAST compression per column (lz4, migration 008).
        await conn.execute(
            f"CREATE TABLE {name} (LIKE {table} "
            "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)"
        )
        # A CHECK constraint matching the range lets ATTACH skip scanning the new table.
        await conn.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (ts >= {lo_sql} AND ts < {hi_sql})")
        if default is not None:
            columns = ", ".join(await _columns(conn, table))
            status = await conn.execute(
                f"WITH moved AS (DELETE FROM {default} WHERE ts >= {lo_sql} AND ts < {hi_sql} RETURNING {columns}) "
                f"INSERT INTO {name} ({columns}) SELECT {columns} FROM moved"
            )
            moved = int(status.rsplit(" ", 1)[1])
        # Indexes (primary key included) are created on the partition by ATTACH, after the rows are in.
        await conn.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo_sql}) TO ({hi_sql})")
        await conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")
        await _maintenance_summarizes(conn, name)
    return moved


async def _maintenance_summarizes(conn: asyncpg.Connection, partition: str) -> None:
    """The new partition's BRIN indexes inherit autosummarize from the parent's; the maintenance task
    summarizes them instead (receiver.storage.brin; migration 014 says why)."""
    for index in await brin_indexes(conn, [partition], autosummarized_only=True):
        await conn.execute(f"ALTER INDEX {index} SET (autosummarize = off)")


_BRIN_INDEXES = """
SELECT ix.indexrelid::regclass::text AS index
FROM pg_index ix JOIN pg_class c ON c.oid = ix.indexrelid JOIN pg_am a ON a.oid = c.relam
WHERE ix.indrelid = ANY($1::regclass[]) AND a.amname = 'brin'
  AND (NOT $2 OR coalesce(c.reloptions @> ARRAY['autosummarize=on'], false))
ORDER BY 1
"""


async def brin_indexes(conn: asyncpg.Connection, relations: list[str], autosummarized_only: bool = False) -> list[str]:
    """The BRIN indexes on `relations` (partitions or chunks), those with autosummarize on if asked."""
    return [r["index"] for r in await conn.fetch(_BRIN_INDEXES, relations, autosummarized_only)]


async def create_day(conn: asyncpg.Connection, table: str, day: date, default: str | None, lock_timeout_ms: int) -> int:
    """Create and attach `table`'s partition for one UTC day (see create_partition)."""
    lo, hi = day_bounds(day)
    return await create_partition(conn, table, lo, hi, default, lock_timeout_ms)


async def default_slots(conn: asyncpg.Connection, default: str, length: timedelta) -> list[datetime]:
    """Starts of the partition-length slots that have rows in the DEFAULT partition, oldest first
    (DEFAULT is normally empty)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT date_bin($1::interval, ts, $2::timestamptz) AS slot FROM {default} ORDER BY slot",
        length,
        _EPOCH,
    )
    return [r["slot"].astimezone(UTC) for r in rows]


async def maintain_table(
    conn: asyncpg.Connection,
    table: str,
    *,
    now: datetime,
    days_ahead: int,
    retention_days: int,
    max_default_days: int,
    lock_timeout_ms: int,
    report: PartitionReport,
    partition_hours: int = 6,
) -> TablePartitions:
    """One pass over one table: rows in DEFAULT first (their slots), then today and the days ahead,
    then retention. Partitions are `partition_hours` long; existing ones of another length are kept
    and only the time they do not cover gets new partitions."""
    length = timedelta(hours=partition_hours)
    state = await list_partitions(conn, table)
    today = midnight(now)
    cutoff = today - timedelta(days=retention_days)  # rows before this have expired
    wanted: list[tuple[datetime, datetime]] = []
    if state.default is not None:
        from_default: list[tuple[datetime, datetime]] = []
        for slot in await default_slots(conn, state.default, length):
            if slot > now + timedelta(days=MAX_FUTURE_DAYS):
                report.deferred.append(
                    f"{table}: rows from {slot:%Y-%m-%d %H:%M} stay in DEFAULT (over {MAX_FUTURE_DAYS} days ahead)"
                )
            elif slot + length <= cutoff:
                lo, hi = _literal(slot), _literal(slot + length)
                status = await conn.execute(f"DELETE FROM {state.default} WHERE ts >= {lo} AND ts < {hi}")
                report.rows_expired[table] = report.rows_expired.get(table, 0) + int(status.rsplit(" ", 1)[1])
            else:
                from_default.extend(state.gaps(slot, slot + length))
        budget = max_default_days * (24 // partition_hours)  # a pass moves at most this many days of rows
        if len(from_default) > budget:
            report.deferred.append(f"{table}: {len(from_default) - budget} more time ranges in DEFAULT")
            from_default = from_default[:budget]
        wanted += from_default
    slot, horizon = today, today + timedelta(days=days_ahead + 1)
    while slot < horizon:
        wanted += state.gaps(slot, slot + length)
        slot += length
    for lo, hi in dict.fromkeys(wanted):  # ordered, unique
        if state.gaps(lo, hi) != [(lo, hi)]:
            continue  # created earlier in this pass
        name = partition_name(table, lo, hi - lo)
        try:
            moved = await create_partition(conn, table, lo, hi, state.default, lock_timeout_ms)
        except asyncpg.LockNotAvailableError:
            report.deferred.append(f"{name}: lock not available within {lock_timeout_ms} ms")
            continue
        state.ranges[name] = (lo, hi)
        report.created.append(name)
        if moved:
            report.rows_moved[name] = moved
    for name, (_lo, hi) in sorted(state.ranges.items(), key=lambda item: item[1]):
        if hi > cutoff:
            continue
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                await conn.execute(f"DROP TABLE {name}")
        except asyncpg.LockNotAvailableError:
            report.deferred.append(f"{name}: lock not available within {lock_timeout_ms} ms")
            continue
        del state.ranges[name]
        report.dropped.append(name)
    return state

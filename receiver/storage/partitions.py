"""Daily range partitions of the native flavor: created ahead, filled from DEFAULT, dropped for retention.

llm_traces, llm_metrics and llm_logs are `PARTITION BY RANGE (ts)` with a DEFAULT partition (migrations
001/002). This module keeps one partition per UTC day, named `<table>_pYYYYMMDD`:

- ahead: today and the next `days_ahead` days exist before their rows arrive;
- late and backfilled rows (a day without a partition) land in DEFAULT, so nothing is ever refused for
  its date. PostgreSQL refuses to create a partition whose range has rows in DEFAULT, so for such a day
  one transaction creates the table, moves the day's rows out of DEFAULT into it, and attaches it;
- retention: partitions older than `retention_days` are dropped (whole files: no DELETE, no bloat), and
  rows of expired days found in DEFAULT are deleted.

Safe while writers COPY. A COPY routes each row with the partition layout it read when it started, so
a row for day D routed to DEFAULT by a COPY that began before D's partition was attached would then
violate DEFAULT's new constraint and fail its batch. So a partition is attached under a SHARE lock on
the parent table alone (`LOCK TABLE ONLY`): it waits for the COPY transactions in flight (one batch
each) and holds new ones back for the few milliseconds the attach takes; readers are not blocked. The
day's table is created first as a plain table with a CHECK constraint matching its range, so ATTACH
does not scan it; DEFAULT is locked exclusively, and only its rows of that day are moved. Every DDL runs
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


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), UTC)
    return start, start + timedelta(days=1)


def _literal(moment: datetime) -> str:
    return f"'{moment.strftime('%Y-%m-%d %H:%M:%S')}+00'"


def utc_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


@dataclass
class TablePartitions:
    """What exists for one partitioned table."""

    table: str
    days: set[date] = field(default_factory=set)  # daily partitions named by this module
    default: str | None = None  # the DEFAULT partition's name
    others: list[str] = field(default_factory=list)  # partitions not made by us (left alone)


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
    pattern = re.compile(rf"^{re.escape(table)}_p(\d{{8}})$")
    for row in rows:
        name, bound = row["relname"], row["bound"]
        match = pattern.match(name)
        if bound == "DEFAULT":
            found.default = name
        elif match:
            found.days.add(datetime.strptime(match.group(1), "%Y%m%d").date())
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


async def create_day(conn: asyncpg.Connection, table: str, day: date, default: str | None, lock_timeout_ms: int) -> int:
    """Create and attach `table`'s partition for `day`, moving that day's rows out of DEFAULT.
    Returns the number of rows moved. One transaction: on any error nothing changes."""
    name = partition_name(table, day)
    lo, hi = (_literal(x) for x in day_bounds(day))
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
        await conn.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (ts >= {lo} AND ts < {hi})")
        if default is not None:
            columns = ", ".join(await _columns(conn, table))
            status = await conn.execute(
                f"WITH moved AS (DELETE FROM {default} WHERE ts >= {lo} AND ts < {hi} RETURNING {columns}) "
                f"INSERT INTO {name} ({columns}) SELECT {columns} FROM moved"
            )
            moved = int(status.rsplit(" ", 1)[1])
        # Indexes (primary key included) are created on the partition by ATTACH, after the rows are in.
        await conn.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
        await conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")
    return moved


async def default_days(conn: asyncpg.Connection, default: str) -> list[date]:
    """UTC days that have rows in the DEFAULT partition, oldest first (DEFAULT is normally empty)."""
    rows = await conn.fetch(f"SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS day FROM {default} ORDER BY day")
    return [r["day"] for r in rows]


async def maintain_table(
    conn: asyncpg.Connection,
    table: str,
    *,
    today: date,
    days_ahead: int,
    retention_days: int,
    max_default_days: int,
    lock_timeout_ms: int,
    report: PartitionReport,
) -> TablePartitions:
    """One pass over one table: rows in DEFAULT first (their days), then the days ahead, then retention."""
    state = await list_partitions(conn, table)
    oldest_kept = today - timedelta(days=retention_days)
    wanted: list[date] = []
    if state.default is not None:
        for day in await default_days(conn, state.default):
            if day > today + timedelta(days=MAX_FUTURE_DAYS):
                report.deferred.append(f"{table}: rows dated {day} stay in DEFAULT (over {MAX_FUTURE_DAYS} days ahead)")
            elif day < oldest_kept:
                lo, hi = (_literal(x) for x in day_bounds(day))
                status = await conn.execute(f"DELETE FROM {state.default} WHERE ts >= {lo} AND ts < {hi}")
                report.rows_expired[table] = report.rows_expired.get(table, 0) + int(status.rsplit(" ", 1)[1])
            elif day not in state.days:
                wanted.append(day)
        if len(wanted) > max_default_days:
            report.deferred.append(f"{table}: {len(wanted) - max_default_days} more days in DEFAULT")
            wanted = wanted[:max_default_days]
    wanted += [today + timedelta(days=n) for n in range(days_ahead + 1) if today + timedelta(days=n) not in state.days]
    for day in dict.fromkeys(wanted):  # ordered, unique
        name = partition_name(table, day)
        try:
            moved = await create_day(conn, table, day, state.default, lock_timeout_ms)
        except asyncpg.LockNotAvailableError:
            report.deferred.append(f"{name}: lock not available within {lock_timeout_ms} ms")
            continue
        state.days.add(day)
        report.created.append(name)
        if moved:
            report.rows_moved[name] = moved
    for day in sorted(d for d in state.days if d < oldest_kept):
        name = partition_name(table, day)
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                await conn.execute(f"DROP TABLE {name}")
        except asyncpg.LockNotAvailableError:
            report.deferred.append(f"{name}: lock not available within {lock_timeout_ms} ms")
            continue
        state.days.discard(day)
        report.dropped.append(name)
    return state

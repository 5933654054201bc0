"""Does PostgreSQL's cost per span stay flat as the day's table grows? `python -m benchmarks.growth`.

A benchmark on an empty table cannot answer this: an index whose insert cost grows with the table (a
hash index over a key with few values walks an ever longer overflow chain; a btree led by a random key
dirties a random leaf per row and, once it outgrows memory, reads one) looks free at 50,000 rows and
collapses at millions. So this COPYs millions of loadgen spans — the receiver's own conversion of
loadgen's workload, with its production cardinalities (Zipf users, sessions of a few turns, a few hot
models) and timestamps advancing at `--rate` spans per second of simulated time — into one day of
`llm_traces`, the way the receiver's writers do (batches of 5,000, one transaction each), and after
every `--step` rows prints what that step cost:

- µs of CPU of the server backend doing the COPY, per row (from /proc: the whole insert path);
- buffer accesses per row of each index (pg_statio_user_indexes: hits + reads). This is the
  machine-independent figure: it counts the pages an insert visits, so a growing overflow chain or
  a descent that stops fitting in memory shows as a rising number, whatever else the machine runs;
- WAL bytes and full-page images per row (pg_stat_wal), and the size of each index.

It does this for each `--variant` (index set / primary-key order) in a fresh database of the chosen
flavor, so the table compares them side by side. `tests/test_storage_growth.py` runs a small version
of the buffer-access check in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from llm_observatory_loadgen.bodies import build_pool
from llm_observatory_loadgen.ids import RunId
from llm_observatory_loadgen.workload import WorkloadSpec
from receiver import schema
from receiver.convert.common import ConvertOptions
from receiver.convert.pricing import PriceBook
from receiver.convert.traces_bytes import convert_traces_bytes
from receiver.storage.embedded import EmbeddedPostgres, timescaledb_installed
from receiver.storage.migrate import load_migrations, migrate
from receiver.storage.partitions import create_day
from receiver.storage.pricing_store import default_pricing_file, read_pricing_file
from tests.support.cleanup import throwaway_dir
from tests.support.process import free_port

# Index sets to compare, as SQL run after the migrations. "current" is whatever the migrations give.
VARIANTS: dict[str, tuple[str, ...]] = {
    "current": (),
    # Migration 004's set before migration 009: hash indexes on the two user-supplied ids.
    "hash-ids": (
        "DROP INDEX IF EXISTS llm_traces_session_ts_idx",
        "DROP INDEX IF EXISTS llm_traces_user_ts_idx",
        "CREATE INDEX IF NOT EXISTS llm_traces_session_id_hash ON llm_traces USING hash (session_id)",
        "CREATE INDEX IF NOT EXISTS llm_traces_user_id_hash ON llm_traces USING hash (user_id)",
    ),
    # btree (id, ts) in their place (deduplicated: PostgreSQL 13+ does it by default).
    "btree-ids": (
        "DROP INDEX IF EXISTS llm_traces_session_id_hash",
        "DROP INDEX IF EXISTS llm_traces_user_id_hash",
        "CREATE INDEX IF NOT EXISTS llm_traces_session_ts_idx ON llm_traces (session_id, ts)",
        "CREATE INDEX IF NOT EXISTS llm_traces_user_ts_idx ON llm_traces (user_id, ts)",
    ),
    # No index on the ids at all: the floor the others are measured against.
    "no-ids": (
        "DROP INDEX IF EXISTS llm_traces_session_id_hash",
        "DROP INDEX IF EXISTS llm_traces_user_id_hash",
        "DROP INDEX IF EXISTS llm_traces_session_ts_idx",
        "DROP INDEX IF EXISTS llm_traces_user_ts_idx",
    ),
}
# The primary key's name differs by flavor (the native table was made LIKE a template): find it.
_DROP_PRIMARY_KEY = """
DO $$ DECLARE name text;
BEGIN
  SELECT conname INTO name FROM pg_constraint WHERE conrelid = 'llm_traces'::regclass AND contype = 'p';
  IF name IS NOT NULL THEN EXECUTE format('ALTER TABLE llm_traces DROP CONSTRAINT %I', name); END IF;
END $$"""
# Primary-key orders to combine with the index sets ("pk=..." in a variant name).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    # The idempotency key with the random trace id first: every insert lands on a random leaf.
    "trace-first": (
        _DROP_PRIMARY_KEY,
        "DROP INDEX IF EXISTS llm_traces_trace_id_idx",
        "ALTER TABLE llm_traces ADD PRIMARY KEY (trace_id, span_id, ts)",
    ),
    # Time first: inserts append near the right edge; trace lookups get their own (smaller) index.
    "time-first": (
        _DROP_PRIMARY_KEY,
        "ALTER TABLE llm_traces ADD PRIMARY KEY (ts, trace_id, span_id)",
        "CREATE INDEX IF NOT EXISTS llm_traces_trace_id_idx ON llm_traces (trace_id)",
    ),
    "current": (),
}


@dataclass
class Step:
    rows: int  # rows in the table at the end of the step
    cpu_us_per_row: float
    wall_rows_per_s: float
    wal_bytes_per_row: float
    fpi_per_1000_rows: float
    index_blocks_per_row: dict[str, float] = field(default_factory=dict)
    index_mb: dict[str, float] = field(default_factory=dict)
    heap_mb: float = 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RowSource:
    """Rows of loadgen's workload as the receiver converts them, dated `rate` spans per second apart.

    Each body is rendered for a new send number (new trace ids, the session and user rotation) and
    re-dated to the simulated clock, then converted by the receiver's trace converter."""

    def __init__(self, start: datetime, rate: float, seed: int = 1) -> None:
        self.pool = build_pool(WorkloadSpec(), RunId.new(), "protobuf", 16, seed)
        self.options = ConvertOptions(price_book=PriceBook(read_pricing_file(default_pricing_file())))
        self.start_ns = int(start.timestamp() * 1e9)
        self.rate = rate
        self.k = 0
        self.produced = 0

    def batch(self) -> list[tuple[Any, ...]]:
        entry = self.pool.entries[self.k % len(self.pool.entries)]
        self.k += 1
        now_ns = self.start_ns + int(self.produced / self.rate * 1e9)
        rows = convert_traces_bytes(entry.traces.render(self.k, now_ns), self.options).rows
        self.produced += len(rows)
        return rows


async def _prepare(cluster: EmbeddedPostgres, name: str, flavor: str, sql: tuple[str, ...], day: datetime) -> str:
    admin = await asyncpg.connect(cluster.admin_dsn())
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = cluster.admin_dsn(name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, flavor, load_migrations())
        for statement in sql:
            await conn.execute(statement)
        if flavor == "native":
            await create_day(conn, schema.TRACES_TABLE, day.date(), "llm_traces_default", 10_000)
    finally:
        await conn.close()
    return dsn


async def _partition_of(conn: asyncpg.Connection, flavor: str) -> str:
    """The table the rows land in: the day partition (native) or the newest chunk (timescale)."""
    if flavor == "native":
        return (
            await conn.fetchval(
                "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'llm_traces'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT' "
                "ORDER BY pg_relation_size(c.oid) DESC LIMIT 1"
            )
            or "llm_traces"
        )
    return await conn.fetchval(
        "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'llm_traces' ORDER BY range_end DESC LIMIT 1"
    )


async def index_page_visits(conn: asyncpg.Connection, table: str) -> dict[str, tuple[int, int]]:
    """index -> (blocks hit + read so far, size in bytes) for the indexes of `table`, each named after
    the index of llm_traces it belongs to (partition and chunk indexes get generated names)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT 1")  # a transaction end: the flush happens
    rows = await conn.fetch(
        """
        SELECT coalesce(parent.relname, s.indexrelname) AS name,
               coalesce(s.idx_blks_hit, 0) + coalesce(s.idx_blks_read, 0) AS blocks,
               pg_relation_size(s.indexrelid) AS size
        FROM pg_statio_all_indexes s
        LEFT JOIN pg_inherits i ON i.inhrelid = s.indexrelid
        LEFT JOIN pg_class parent ON parent.oid = i.inhparent
        WHERE s.relid = $1::regclass
        """,
        table,
    )
    return {_short(r["name"]): (int(r["blocks"]), int(r["size"])) for r in rows}


def _short(index: str) -> str:
    """llm_traces_session_ts_idx -> session_ts_idx; a TimescaleDB chunk's copy likewise."""
    return index.rsplit("llm_traces_", 1)[-1]


async def measure(dsn: str, flavor: str, source: RowSource, total: int, step: int, report) -> list[Step]:
    conn = await asyncpg.connect(dsn)
    await conn.execute("SET stats_fetch_consistency = none")
    steps: list[Step] = []
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        rows_in = 0
        pending: list[tuple[Any, ...]] = []
        table = None
        before = None
        while rows_in < total:
            cpu0, wall0 = _cpu_seconds(backend), time.perf_counter()
            wal0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
            fpi0 = await conn.fetchval("SELECT wal_fpi FROM pg_stat_wal")
            copied = 0
            while copied < step and rows_in < total:
                while len(pending) < 5000:
                    pending.extend(source.batch())
                batch, pending = pending[:5000], pending[5000:]
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        schema.TRACES_TABLE, records=batch, columns=list(schema.TRACES_COLUMNS)
                    )
                copied += len(batch)
                rows_in += len(batch)
                if table is None:
                    table = await _partition_of(conn, flavor)
                    before = {name: (0, 0) for name in await index_page_visits(conn, table)}
            cpu = _cpu_seconds(backend) - cpu0
            wall = time.perf_counter() - wall0
            wal = float(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", wal0))
            fpi = int(await conn.fetchval("SELECT wal_fpi FROM pg_stat_wal")) - int(fpi0)
            stats = await index_page_visits(conn, table)
            result = Step(rows_in, cpu / copied * 1e6, copied / wall, wal / copied, fpi / copied * 1000)
            for name, (blocks, size) in stats.items():
                result.index_blocks_per_row[name] = (blocks - before.get(name, (0, 0))[0]) / copied
                result.index_mb[name] = size / 2**20
            result.heap_mb = (await conn.fetchval("SELECT pg_table_size($1::regclass)", table)) / 2**20
            before = {name: (blocks, size) for name, (blocks, size) in stats.items()}
            steps.append(result)
            report(result)
    finally:
        await conn.close()
    return steps


def _print_step(variant: str, s: Step) -> None:
    blocks = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s.index_blocks_per_row.items()))
    sizes = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(s.index_mb.items()))
    print(
        f"  {variant}: {s.rows / 1e6:5.2f} M rows | backend {s.cpu_us_per_row:6.1f} µs/row | "
        f"{s.wall_rows_per_s:8,.0f} rows/s | WAL {s.wal_bytes_per_row:6,.0f} B/row, "
        f"{s.fpi_per_1000_rows:6.1f} FPI/1000 rows | index blocks/row: {blocks} | MB: heap {s.heap_mb:,.0f}, {sizes}",
        flush=True,
    )


def variant_sql(name: str) -> tuple[str, ...]:
    """'btree-ids' or 'btree-ids+pk=time-first' -> the SQL that builds it."""
    ids, _, pk = name.partition("+pk=")
    if ids not in VARIANTS or (pk or "current") not in PRIMARY_KEYS:
        known = f"index sets {', '.join(VARIANTS)}; optional +pk= one of {', '.join(PRIMARY_KEYS)}"
        raise SystemExit(f"unknown variant {name!r}: {known}")
    return (*PRIMARY_KEYS[pk or "current"], *VARIANTS[ids])


async def run(args: argparse.Namespace) -> None:
    flavor = args.flavor
    if flavor == "timescale" and not timescaledb_installed():
        raise SystemExit("TimescaleDB is not installed for this PostgreSQL")
    root = throwaway_dir("bench-growth")
    cluster = EmbeddedPostgres(root / "pg", port=free_port(), timescale=flavor == "timescale")
    cluster.start()
    # The day starts an hour ago, so a run of hours at the simulated rate stays inside one day.
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day + timedelta(hours=1)
    results: dict[str, list[Step]] = {}
    try:
        for variant in args.variant:
            sql = variant_sql(variant)
            dsn = await _prepare(cluster, "bench_growth", flavor, sql, day)
            print(f"{variant} ({flavor}): {args.rows:,} rows in steps of {args.step:,}", flush=True)
            source = RowSource(start, args.rate)
            results[variant] = await measure(
                dsn, flavor, source, args.rows, args.step, lambda s, v=variant: _print_step(v, s)
            )
    finally:
        cluster.destroy()
    print(f"\nfirst step vs last step ({flavor} flavor, {args.rows:,} rows, steps of {args.step:,})\n")
    print("| variant | backend µs/row first → last | growth | index blocks/row first → last | WAL B/row last |")
    print("|---|---|---|---|---|")
    for variant, steps in results.items():
        first, last = steps[0], steps[-1]
        blocks_first = sum(first.index_blocks_per_row.values())
        blocks_last = sum(last.index_blocks_per_row.values())
        print(
            f"| {variant} | {first.cpu_us_per_row:.1f} → {last.cpu_us_per_row:.1f} "
            f"| {last.cpu_us_per_row / first.cpu_us_per_row - 1:+.0%} | {blocks_first:.2f} → {blocks_last:.2f} "
            f"| {last.wal_bytes_per_row:,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--step", type=int, default=500_000)
    parser.add_argument("--rate", type=float, default=10_000, help="simulated spans per second (span times)")
    parser.add_argument("--flavor", choices=["native", "timescale"], default="native")
    parser.add_argument(
        "--variant",
        action="append",
        help="index set [+pk=ORDER]; repeat to compare (default: hash-ids, then current)",
    )
    args = parser.parse_args()
    args.variant = args.variant or ["hash-ids", "current"]
    for v in args.variant:
        variant_sql(v)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (stop the cluster) on kill
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""COPY encoding cost per row: `python -m benchmarks.copyenc` prints µs of receiver CPU per row (issue 17).

The rows are what the receiver COPYs: loadgen's workload (the requests `make bench` sends) converted by
the native converter into `llm_traces` rows, and metric points and log records from the signal
benchmark's requests into `llm_metrics` and `llm_logs` rows. Each batch is COPYed into a throwaway
PostgreSQL (an unindexed table `LIKE` the signal table: the database's own cost is not the question) two
ways, in turn:
  asyncpg  copy_records_to_table (asyncpg's codecs, value by value): the path before issue 17
  native   receiver/storage/_pgcopy.c encodes the batch, copy_to_table sends the buffer (copy.py's path)
and the native encoder alone (`encode`). Times are CPU time of the benchmark's thread, which runs the event
loop (uvloop, as the receiver) and both encoders (the database is another process): a shared machine
changes them little.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import time
from typing import Any

import asyncpg
import uvloop

from benchmarks import convert as convert_bench
from benchmarks import convert_metrics_logs as signals_bench
from receiver import schema
from receiver.convert.logs_metrics_bytes import convert_logs_bytes, convert_metrics_bytes
from receiver.convert.traces_bytes import NATIVE_STATUS, convert_traces_bytes, native_available
from receiver.storage import pgbinary
from receiver.storage.copy import _copy
from receiver.storage.embedded import EmbeddedPostgres
from receiver.storage.migrate import load_migrations, migrate
from tests.support.cleanup import throwaway_dir
from tests.support.process import free_port


def trace_rows(count: int) -> list[tuple[Any, ...]]:
    bodies = convert_bench.loadgen_bodies(512)
    opts = convert_bench.options()
    rows: list[tuple[Any, ...]] = []
    while len(rows) < count:
        rows += convert_traces_bytes(bodies[len(rows) // 512 % len(bodies)], opts).rows
    return rows[:count]


def signal_rows(table: str, count: int) -> list[tuple[Any, ...]]:
    opts = signals_bench.options()
    if table == schema.METRICS_TABLE:
        body = signals_bench.metrics_request(512).SerializeToString()
        convert = convert_metrics_bytes
    else:
        body = signals_bench.logs_request(512).SerializeToString()
        convert = convert_logs_bytes
    rows: list[tuple[Any, ...]] = []
    while len(rows) < count:
        rows += convert(body, opts).rows
    return rows[:count]


async def measure(conn: asyncpg.Connection, table: str, rows: list[tuple[Any, ...]], batch: int, rounds: int) -> None:
    columns = schema.TABLE_COLUMNS[table]
    target = f"bench_{table}"
    await conn.execute(f"DROP TABLE IF EXISTS {target}")
    await conn.execute(f"CREATE UNLOGGED TABLE {target} (LIKE {table} INCLUDING DEFAULTS)")
    kinds = pgbinary.kinds_for_oids(await pgbinary.column_oids(conn, target, columns))
    assert kinds is not None, f"{table}: a column type the native encoder does not take"
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    clock = time.thread_time
    cpu = {"asyncpg": 0.0, "native": 0.0, "encode": 0.0}
    size = 0
    fallbacks = 0
    gc.collect()
    for _ in range(rounds):
        for part in batches:
            t0 = clock()
            await conn.copy_records_to_table(target, records=part, columns=list(columns))
            t1 = clock()
            native = await _copy(conn, target, columns, part, kinds)  # encoded chunk by chunk as it is sent
            t2 = clock()
            data = pgbinary.encode(part, kinds)
            t3 = clock()
            cpu["asyncpg"] += t1 - t0
            cpu["native"] += t2 - t1
            cpu["encode"] += t3 - t2
            fallbacks += not native
            size += sum(map(len, data or []))
        await conn.execute(f"TRUNCATE {target}")
    n = rounds * len(rows)
    per_row = {path: seconds / n * 1e6 for path, seconds in cpu.items()}
    print(
        f"{table:<11} {len(rows):>6} rows x {rounds} rounds, {batch}-row batches, {size / n:,.0f} B/row:  "
        f"asyncpg {per_row['asyncpg']:6.2f} µs/row   native {per_row['native']:6.2f} µs/row "
        f"(encode {per_row['encode']:5.2f})   ratio {per_row['native'] / per_row['asyncpg']:.2f}"
        + (f"   FALLBACK batches: {fallbacks}" if fallbacks else ""),
        flush=True,
    )
    await conn.execute(f"DROP TABLE {target}")


async def introspection_cost(conn: asyncpg.Connection, table: str, repeats: int = 200) -> float:
    """µs of CPU to read a table's column types (once per connection and plan age in copy.py)."""
    columns = schema.TABLE_COLUMNS[table]
    t0 = time.thread_time()
    for _ in range(repeats):
        await pgbinary.column_oids(conn, table, columns)
    return (time.thread_time() - t0) / repeats * 1e6


async def run(args: argparse.Namespace) -> None:
    if not native_available() or not pgbinary.NATIVE_AVAILABLE:
        raise SystemExit(f"the native modules are not built ({NATIVE_STATUS}; pgcopy: {pgbinary.NATIVE_AVAILABLE})")
    root = throwaway_dir("bench-copyenc")
    cluster = EmbeddedPostgres(root / "pg", port=free_port(), timescale=False)
    cluster.start()
    try:
        conn = await asyncpg.connect(cluster.admin_dsn())
        await migrate(conn, "native", load_migrations())
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; CPU of this thread per row", flush=True)
        tables = args.tables.split(",")
        for table in tables:
            rows = trace_rows(args.rows) if table == schema.TRACES_TABLE else signal_rows(table, args.rows)
            await measure(conn, table, rows, args.batch, args.rounds)
        print(f"column types of llm_traces read: {await introspection_cost(conn, schema.TRACES_TABLE):.0f} µs CPU")
        await conn.close()
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows per table")
    parser.add_argument("--batch", type=int, default=5000, help="rows per COPY (pipeline.batch_max_rows)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tables", default=",".join(schema.TABLE_COLUMNS), help="comma-separated signal tables")
    uvloop.run(run(parser.parse_args()))  # the receiver's event loop


if __name__ == "__main__":
    main()

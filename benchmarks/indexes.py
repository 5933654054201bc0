"""What each index on `llm_traces` costs at ingest: `python -m benchmarks.indexes` prints COPY rows/s.

For every candidate it starts from a fresh database at schema version 002 (the table with only its
primary key, native flavor, with the day's partition attached), adds the candidate, and COPYs the same
realistic rows (benchmarks.spanrows: the receiver's own conversion of GenAI requests, 1 KB prompts) in
batches of 5000, as the receiver's writers do. Each candidate is measured `--runs` times, each time
right after a primary-key-only baseline; the table shows medians, and the medians of the paired ratios:

- COPY rows per CPU-second of the server backend doing the COPY (from /proc): the throughput one
  server core sustains, and steady when other work shares the machine;
- COPY rows/s (wall clock): what a writer sees, but it moves with whatever else the machine runs;
- WAL bytes per row (what each index adds to the write-ahead log, replication and backups).

The README's index table comes from this command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.spanrows import span_rows
from receiver import schema
from receiver.storage.embedded import EmbeddedPostgres
from receiver.storage.migrate import load_migrations, migrate
from tests.support.cleanup import throwaway_dir


@dataclass(frozen=True)
class Candidate:
    label: str
    serves: str
    sql: tuple[str, ...]


CANDIDATES = (
    Candidate("primary key only (trace_id, span_id, ts)", "one trace: WHERE trace_id = $1", ()),
    Candidate(
        "+ ingested_at column (DEFAULT statement_timestamp())",
        "native rollups: rows ingested since the last pass",
        ("ALTER TABLE llm_traces ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT statement_timestamp()",),
    ),
    Candidate(
        "+ ingested_at column + brin (ingested_at)",
        "native rollups: rows ingested since the last pass",
        (
            "ALTER TABLE llm_traces ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT statement_timestamp()",
            "CREATE INDEX ON llm_traces USING brin (ingested_at) WITH (pages_per_range = 32, autosummarize = on)",
        ),
    ),
    Candidate(
        "+ brin (ts)",
        "time ranges inside a day: WHERE ts >= $1 AND ts < $2",
        ("CREATE INDEX ON llm_traces USING brin (ts) WITH (pages_per_range = 32, autosummarize = on)",),
    ),
    Candidate(
        "+ btree (ts DESC)",
        "latest spans: ORDER BY ts DESC LIMIT n (TimescaleDB's default index)",
        ("CREATE INDEX ON llm_traces (ts DESC)",),
    ),
    Candidate(
        "+ btree (ts DESC) WHERE status_code = 'error'",
        "latest errors: WHERE status_code = 'error' ORDER BY ts DESC",
        ("CREATE INDEX ON llm_traces (ts DESC) WHERE status_code = 'error'",),
    ),
    Candidate(
        "+ hash (session_id)",
        "one conversation: WHERE session_id = $1",
        ("CREATE INDEX ON llm_traces USING hash (session_id)",),
    ),
    Candidate(
        "+ hash (user_id)",
        "one user's spans: WHERE user_id = $1 AND ts >= $2",
        ("CREATE INDEX ON llm_traces USING hash (user_id)",),
    ),
    Candidate(
        "+ btree (user_id, ts DESC)",
        "one user's spans: WHERE user_id = $1 AND ts >= $2",
        ("CREATE INDEX ON llm_traces (user_id, ts DESC)",),
    ),
    Candidate(
        "+ btree (provider, model, ts DESC)",
        "spans of one model: WHERE provider = $1 AND model = $2 AND ts >= $3",
        ("CREATE INDEX ON llm_traces (provider, model, ts DESC)",),
    ),
    Candidate(
        "+ btree (service_name, ts DESC)",
        "spans of one service: WHERE service_name = $1 AND ts >= $2",
        ("CREATE INDEX ON llm_traces (service_name, ts DESC)",),
    ),
    Candidate(
        "+ gin (attributes jsonb_path_ops)",
        'attribute search: WHERE attributes @> \'{"app.tenant": "t1"}\'',
        ("CREATE INDEX ON llm_traces USING gin (attributes jsonb_path_ops)",),
    ),
)

# The set migration 004_span_indexes.sql creates (keep the two in step).
CHOSEN = Candidate(
    "chosen set (migration 004)",
    "all of the above that earned their cost",
    (
        "ALTER TABLE llm_traces ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT statement_timestamp()",
        "CREATE INDEX ON llm_traces USING brin (ingested_at) WITH (pages_per_range = 32, autosummarize = on)",
        "CREATE INDEX ON llm_traces USING brin (ts) WITH (pages_per_range = 32, autosummarize = on)",
        "CREATE INDEX ON llm_traces (ts DESC) WHERE status_code = 'error'",
        "CREATE INDEX ON llm_traces USING hash (session_id)",
        "CREATE INDEX ON llm_traces USING hash (user_id)",
    ),
)


async def _template(cluster: EmbeddedPostgres) -> None:
    """A database at schema version 002 (native): llm_traces with its primary key only."""
    admin = await asyncpg.connect(cluster.admin_dsn())
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_TEMPLATE}")
        await admin.execute(f"CREATE DATABASE {_TEMPLATE}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(cluster.admin_dsn(_TEMPLATE))
    try:
        await migrate(conn, "native", [m for m in load_migrations() if m.version <= 2])
    finally:
        await conn.close()


_TEMPLATE = "bench_idx_template"


async def _fresh_database(cluster: EmbeddedPostgres, name: str, day: datetime, sql: tuple[str, ...]) -> str:
    admin = await asyncpg.connect(cluster.admin_dsn())
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE}")
    finally:
        await admin.close()
    dsn = cluster.admin_dsn(name)
    conn = await asyncpg.connect(dsn)
    try:
        lo, hi = day, day + timedelta(days=1)
        await conn.execute(
            f"CREATE TABLE llm_traces_bench PARTITION OF llm_traces FOR VALUES FROM ('{lo.isoformat()}') "
            f"TO ('{hi.isoformat()}')"
        )
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()
    return dsn


@dataclass(frozen=True)
class Measurement:
    rows_per_s: float
    rows_per_cpu_s: float
    wal_bytes_per_row: float


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a local process (the server backend serving our connection)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _copy_all(dsn: str, rows: list[tuple[Any, ...]], batch: int) -> Measurement:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        wal_start = await conn.fetchval("SELECT pg_current_wal_lsn()")
        cpu_start = _cpu_seconds(backend)
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    schema.TRACES_TABLE, records=rows[i : i + batch], columns=list(schema.TRACES_COLUMNS)
                )
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(backend) - cpu_start
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", wal_start)
        return Measurement(len(rows) / elapsed, len(rows) / cpu, float(wal) / len(rows))
    finally:
        await conn.close()


async def run(count: int, runs: int, batch: int, only: str | None) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    print(f"building {count} realistic span rows ...", flush=True)
    rows = span_rows(count, day)
    base = CANDIDATES[0]
    candidates = [c for c in (*CANDIDATES[1:], CHOSEN) if only is None or only in c.label]
    root = throwaway_dir("bench-idx")
    cluster = EmbeddedPostgres(root / "pg", port=55435, timescale=False)
    cluster.start()
    absolute: dict[str, list[Measurement]] = {c.label: [] for c in (base, *candidates)}
    ratios: dict[str, list[tuple[float, float]]] = {c.label: [] for c in candidates}  # (wall, cpu) vs paired base
    try:
        await _template(cluster)

        async def measure(candidate: Candidate) -> Measurement:
            return await _copy_all(await _fresh_database(cluster, "bench_idx", day, candidate.sql), rows, batch)

        await measure(base)  # warm-up, not counted: cold caches, first file extension
        for run_index in range(runs):
            for candidate in candidates:
                # Paired with a baseline measured just before it: the machine's load drifts slowly, so
                # the ratio of the pair is far steadier than either number alone.
                b, m = await measure(base), await measure(candidate)
                absolute[base.label].append(b)
                absolute[candidate.label].append(m)
                ratios[candidate.label].append((m.rows_per_s / b.rows_per_s, m.rows_per_cpu_s / b.rows_per_cpu_s))
                print(
                    f"  run {run_index + 1}: {candidate.label}: {m.rows_per_s:,.0f} rows/s "
                    f"({ratios[candidate.label][-1][0]:.0%} of its baseline), "
                    f"{m.rows_per_cpu_s:,.0f} rows/CPU-s ({ratios[candidate.label][-1][1]:.0%}), "
                    f"{m.wal_bytes_per_row:,.0f} WAL B/row",
                    flush=True,
                )
    finally:
        cluster.destroy()

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(f"\n{count} rows per COPY run, batches of {batch}, medians of {runs} paired runs\n")
    print(
        "| index | serves | COPY rows per backend CPU-s | cost vs PK only (CPU) | COPY rows/s wall "
        "| vs PK only (wall) | WAL bytes/row |"
    )
    print("|---|---|---|---|---|---|---|")
    b = absolute[base.label]
    print(
        f"| {base.label} | {base.serves} | {median([m.rows_per_cpu_s for m in b]):,.0f} | — "
        f"| {median([m.rows_per_s for m in b]):,.0f} | — | {median([m.wal_bytes_per_row for m in b]):,.0f} |"
    )
    for c in candidates:
        a = absolute[c.label]
        cpu_cost = 1 - median([r[1] for r in ratios[c.label]])
        print(
            f"| {c.label} | {c.serves} | {median([m.rows_per_cpu_s for m in a]):,.0f} | {cpu_cost:.0%} "
            f"| {median([m.rows_per_s for m in a]):,.0f} | {median([r[0] for r in ratios[c.label]]):.0%} "
            f"| {median([m.wal_bytes_per_row for m in a]):,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--only", help="measure only candidates whose label contains this text (and the baseline)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (stop the cluster) on kill
    asyncio.run(run(args.rows, args.runs, args.batch, args.only))


if __name__ == "__main__":
    main()

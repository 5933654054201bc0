"""The CPU one rollup pass costs the database: `python -m benchmarks.rollup_pass DSN [--minutes 1]`.

Runs one window of the maintenance task's rollup pass (receiver.storage.rollups) over spans already in
the database, in a transaction that is rolled back, and prints the backend's CPU per span. Point it at a
database with minutes of steady ingest, e.g. a soak's kept cluster (`make soak SOAK_ARGS="--keep"`): the
window starts `--offset-s` after the first ingested span. The backend must run on this machine (its CPU
is read from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

import asyncpg

from benchmarks.bench import own_cpu_seconds
from receiver.storage import rollups
from receiver.storage.brin import is_hypertable


def _cpu_s(pid: int) -> float:
    used = own_cpu_seconds(pid)
    if used is None:
        raise SystemExit(f"no /proc/{pid}: the database backend must run on this machine")
    return used


async def measure(dsn: str, minutes: float, offset_s: float, rounds: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        first = await conn.fetchval("SELECT min(ingested_at) FROM llm_traces")
        if first is None:
            raise SystemExit("llm_traces is empty")
        start = first + timedelta(seconds=offset_s)
        end = start + timedelta(minutes=minutes)
        late_limit = rollups.LATE_LIMIT if await is_hypertable(conn, "llm_traces") else None
        for _ in range(rounds):
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute("UPDATE rollup_watermarks SET watermark = $1 WHERE source = $2", start, "llm_traces")
                report = rollups.RollupReport()
                before = _cpu_s(pid)
                await rollups._one_window(conn, end, report, late_limit)
                used = _cpu_s(pid) - before
            finally:
                await transaction.rollback()
            per_span = used / report.spans * 1e6 if report.spans else float("nan")
            print(f"window {start:%H:%M:%S}+{minutes:g} min: {report.spans:,} spans, {used:.2f} s of backend CPU, "
                  f"{per_span:.1f} us/span", flush=True)  # fmt: skip
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the window (1)")
    parser.add_argument("--offset-s", type=float, default=30.0, help="window start after the first span (30)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(measure(args.dsn, args.minutes, args.offset_s, args.rounds))


if __name__ == "__main__":
    main()

"""The read API under a database of millions of spans: `python -m benchmarks.query` (`make bench-query`).

Loads `--rows` spans by COPY — loadgen's workload as the receiver converts it (benchmarks.growth's
RowSource: production cardinalities, Zipf users, sessions of a few turns), spread evenly over the last
`--days` days — with the log records loadgen correlates with them (half a record per span) and the
GenAI client metrics an application exports (every `--metrics-interval-s` per instance). Then it
refreshes the rollups, runs VACUUM ANALYZE (what autovacuum does to a table that stopped growing),
starts the real receiver on that database, and sends a fixed, seeded mix of read requests over HTTP,
one at a time, printing p50 / p95 per endpoint (and per kind of request inside it). Target: p95 below
100 ms for every endpoint.

`--variant` changes the index set before loading (SQL after the migrations, as in benchmarks.growth):
compare query times with and without an index; benchmarks.growth measures what it costs to ingest.
`--keep DIR` leaves the loaded cluster in DIR (and reuses it on the next run: the load takes minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from benchmarks.growth import SpansAndLogs
from llm_observatory_loadgen.bodies import build_pool
from llm_observatory_loadgen.genai_metrics import MetricsBuilder
from llm_observatory_loadgen.ids import RunId
from llm_observatory_loadgen.workload import WorkloadSpec
from receiver import schema
from receiver.convert.metrics import convert_metrics
from receiver.storage import rollups
from receiver.storage.embedded import EmbeddedPostgres, timescaledb_installed
from receiver.storage.migrate import load_migrations, migrate
from receiver.storage.partitions import create_partition, slot_start
from tests.support.cleanup import throwaway_dir
from tests.support.process import ReceiverProcess, free_port

DATABASE = "bench_query"
BATCH = 5000
PARTITION_HOURS = 6

# Index sets to compare (SQL run after the migrations). "current" is what the migrations give.
VARIANTS: dict[str, tuple[str, ...]] = {
    "current": (),
    # Without migration 013: log records of a trace found by scanning the trace's time range.
    "no-logs-trace-idx": ("DROP INDEX IF EXISTS llm_logs_trace_id_idx",),
    "no-metrics-name-idx": ("DROP INDEX IF EXISTS llm_metrics_name_ts_idx",),
}


async def _create_partitions(conn: asyncpg.Connection, start: datetime, end: datetime) -> None:
    length = timedelta(hours=PARTITION_HOURS)
    for table in (schema.TRACES_TABLE, schema.METRICS_TABLE, schema.LOGS_TABLE):
        slot = slot_start(start, length)
        while slot < end + timedelta(days=1):
            await create_partition(conn, table, slot, slot + length, f"{table}_default", 10_000)
            slot += length


async def _copy(conn: asyncpg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


async def load(dsn: str, flavor: str, args: argparse.Namespace, report: Any) -> None:
    """Spans, logs and metric points over [now - days, now), then the rollups."""
    rows, days = args.rows, args.days
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    rate = rows / (days * 86400)
    conn = await asyncpg.connect(dsn)
    try:
        if flavor == "native":
            await _create_partitions(conn, start, end)
        source = SpansAndLogs(start, rate)
        started = time.perf_counter()
        spans_in = logs_in = 0
        pending_spans: list[tuple[Any, ...]] = []
        pending_logs: list[tuple[Any, ...]] = []
        while spans_in < rows:
            while len(pending_spans) < BATCH:
                spans, logs = source.both()
                pending_spans.extend(spans)
                pending_logs.extend(logs)
            batch, pending_spans = pending_spans[: min(BATCH, rows - spans_in)], pending_spans[BATCH:]
            await _copy(conn, schema.TRACES_TABLE, schema.TRACES_COLUMNS, batch)
            if len(pending_logs) >= BATCH:
                await _copy(conn, schema.LOGS_TABLE, schema.LOGS_COLUMNS, pending_logs)
                logs_in += len(pending_logs)
                pending_logs = []
            spans_in += len(batch)
            if spans_in % 250_000 < BATCH:
                elapsed = time.perf_counter() - started
                report(f"  {spans_in:,} spans, {logs_in:,} log records ({spans_in / elapsed:,.0f} spans/s)")
        await _copy(conn, schema.LOGS_TABLE, schema.LOGS_COLUMNS, pending_logs)
        logs_in += len(pending_logs)
        report(f"  spans and log records in {time.perf_counter() - started:.0f} s")
        t0 = time.perf_counter()
        points = await _load_metrics(conn, source.options, start, end, args.metrics_interval_s, args.metrics_instances)
        report(f"  loaded {spans_in:,} spans, {logs_in:,} log records, {points:,} metric points")
        report(f"  metric points in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        while not (await rollups.refresh(conn, 0.0)).caught_up:  # both flavors (migration 015)
            pass
        report(f"  rollups refreshed in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        report(f"  VACUUM ANALYZE in {time.perf_counter() - t0:.0f} s")
    finally:
        await conn.close()


async def _load_metrics(
    conn: asyncpg.Connection, options: Any, start: datetime, end: datetime, interval_s: float, instances: int
) -> int:
    """`instances` application instances exporting the GenAI client histograms every interval_s."""
    pool = build_pool(WorkloadSpec(), RunId.new(), "protobuf", 4, 7)
    run = RunId.new()
    builders = [MetricsBuilder(run, exporter, pool.series(), "protobuf", 7) for exporter in range(instances)]
    rows: list[tuple[Any, ...]] = []
    total = 0
    step = int(interval_s * 1e9)
    t = int(start.timestamp() * 1e9)
    stop = int(end.timestamp() * 1e9)
    while t + step <= stop:
        for builder in builders:
            body, _ = builder.build(t, t + step)
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            rows.extend(convert_metrics(request, options).rows)
        if len(rows) >= BATCH:
            await _copy(conn, schema.METRICS_TABLE, schema.METRICS_COLUMNS, rows)
            total += len(rows)
            rows = []
        t += step
    await _copy(conn, schema.METRICS_TABLE, schema.METRICS_COLUMNS, rows)
    return total + len(rows)


# -- the query mix ------------------------------------------------------------------------------------


@dataclass
class Sample:
    trace_ids: list[str]
    users: list[str]
    sessions: list[str]
    models: list[str]
    services: list[str]
    start: datetime
    end: datetime


async def sample(dsn: str, seed: int) -> Sample:
    """Ids to ask for, drawn from the stored rows (a fixed seed: the same mix on every run)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"SELECT setseed({(seed % 1000) / 1000})")
        span_range = await conn.fetchrow("SELECT min(ts) AS lo, max(ts) AS hi FROM llm_traces")
        rows = await conn.fetch(
            "SELECT trace_id, user_id, session_id FROM llm_traces TABLESAMPLE BERNOULLI (1) REPEATABLE ($1) "
            "WHERE session_id IS NOT NULL LIMIT 2000",
            seed,
        )
        models = [r["model"] for r in await conn.fetch("SELECT DISTINCT model FROM llm_metrics_1day")]
        services = [r["service_name"] for r in await conn.fetch("SELECT DISTINCT service_name FROM llm_metrics_1day")]
    finally:
        await conn.close()
    rng = random.Random(seed)
    rng.shuffle(rows)
    return Sample(
        trace_ids=[r["trace_id"].hex for r in rows],
        users=[r["user_id"] for r in rows if r["user_id"]],
        sessions=[r["session_id"] for r in rows],
        models=sorted(m for m in models if m),
        services=sorted(s for s in services if s),
        start=span_range["lo"],
        end=span_range["hi"],
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def query_mix(s: Sample, per_kind: int, seed: int) -> list[tuple[str, str, str]]:
    """(endpoint, kind, path with query) for every request, in a seeded shuffled order."""
    rng = random.Random(seed)
    mix: list[tuple[str, str, str]] = []
    span = (s.end - s.start).total_seconds()

    def hour_window() -> tuple[str, str]:
        lo = s.start + timedelta(seconds=rng.uniform(0, max(0.0, span - 3600)))
        return _iso(lo), _iso(lo + timedelta(hours=1))

    for i in range(per_kind):
        mix.append(("trace", "by id", f"/traces/{s.trace_ids[i % len(s.trace_ids)]}"))
        mix.append(("session", "by id", f"/sessions/{s.sessions[(i * 7) % len(s.sessions)]}"))
        mix.append(("spans", "latest", "/spans?limit=100"))
        mix.append(("spans", "model", f"/spans?model={rng.choice(s.models)}&limit=100"))
        mix.append(("spans", "user", f"/spans?user_id={rng.choice(s.users)}&limit=100"))
        mix.append(("spans", "errors", "/spans?status=error&limit=100"))
        lo, hi = hour_window()
        mix.append(("spans", "service+hour", f"/spans?service={rng.choice(s.services)}&from={lo}&to={hi}&limit=100"))
        mix.append(("spans", "slow", "/spans?min_duration_ms=3000&limit=50"))
        lo, hi = hour_window()
        attr = f"gen_ai.request.model={rng.choice(('gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4'))}"
        mix.append(("spans", "attribute+hour", f"/spans?attribute={attr}&from={lo}&to={hi}&limit=100"))
        mix.append(("usage", "1h by model, 24h", "/usage?bucket=1h&group_by=model"))
        mix.append(("usage", "1m by provider, 1h", "/usage?bucket=1m&group_by=provider"))
        mix.append(("usage", "1d by service, 30d", "/usage?bucket=1d&group_by=service"))
        mix.append(("usage", "1h one user, 24h", f"/usage?bucket=1h&user_id={rng.choice(s.users)}"))
        mix.append(("usage", "1h by environment, 24h", "/usage?bucket=1h&group_by=environment,model"))
        lo, _ = hour_window()
        mix.append(("metrics", "1h window", f"/metrics?name=gen_ai.client.operation.duration&from={lo}&limit=1000"))
        mix.append(("models", "all", "/models"))
    rng.shuffle(mix)
    return mix


async def paging(session: aiohttp.ClientSession, base: str, s: Sample, pages: int, times: dict) -> None:
    """Pages 2..n of a filtered listing: the cursor's cost must not grow with the page number."""
    for model in s.models[:3]:
        cursor = None
        for _ in range(pages):
            path = f"/spans?model={model}&limit=100" + (f"&cursor={cursor}" if cursor else "")
            started = time.perf_counter()
            async with session.get(base + path) as response:
                body = await response.json()
            elapsed = time.perf_counter() - started
            if cursor is not None:
                times[("spans", "model, next pages")].append(elapsed)
            cursor = body.get("next_cursor")
            if cursor is None:
                break


def cpu_ns(pids: list[int]) -> int:
    """CPU time used so far by every thread of these processes, in ns (/proc/PID/task/TID/schedstat:
    nanosecond resolution, unlike the 10 ms ticks of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


async def query_backends(dsn: str) -> list[int]:
    """The PostgreSQL backends of the read API's pool (application_name ...:query)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name LIKE '%:query'")
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def run_mix(
    base: str, mix: list[tuple[str, str, str]], s: Sample, receiver_pid: int, dsn: str
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]]]:
    """Wall time of each request and the CPU it cost (receiver + its database backends): the CPU
    figure holds on a busy machine, where wall time mostly measures the neighbours."""
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    cpu: dict[tuple[str, str], list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _endpoint, _kind, path in mix[:40]:  # warm-up: connections, plans, caches
            async with session.get(base + path) as response:
                await response.read()
        pids = [receiver_pid, *await query_backends(dsn)]
        for endpoint, kind, path in mix:
            cpu0 = cpu_ns(pids)
            started = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
                status = response.status
            elapsed = time.perf_counter() - started
            used = (cpu_ns(pids) - cpu0) / 1e9
            if status != 200:
                failures[f"{endpoint} {kind}: HTTP {status}"] += 1
                continue
            times[(endpoint, kind)].append(elapsed)
            cpu[(endpoint, kind)].append(used)
        await paging(session, base, s, 10, times)
    for what, count in failures.items():
        print(f"  FAILED {count}x {what}")
    return times, cpu


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))] * 1000


def print_table(times: dict[tuple[str, str], list[float]], cpu: dict[tuple[str, str], list[float]]) -> None:
    by_endpoint: dict[str, list[float]] = defaultdict(list)
    cpu_by_endpoint: dict[str, list[float]] = defaultdict(list)
    for (endpoint, kind), values in times.items():
        by_endpoint[endpoint].extend(values)
        cpu_by_endpoint[endpoint].extend(cpu.get((endpoint, kind), []))
    print("\n| endpoint | requests | p50 ms | p95 ms | max ms | p95 < 100 ms | CPU p50 ms | CPU p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for endpoint in ("trace", "spans", "session", "usage", "metrics", "models"):
        values = by_endpoint.get(endpoint, [])
        if values:
            p95 = _ms(values, 0.95)
            used = cpu_by_endpoint[endpoint]
            print(
                f"| {endpoint} | {len(values)} | {_ms(values, 0.5):.1f} | {p95:.1f} | {max(values) * 1000:.1f} "
                f"| {'yes' if p95 < 100 else 'NO'} | {_ms(used, 0.5):.1f} | {_ms(used, 0.95):.1f} |"
            )
    print("\n| endpoint | request | n | p50 ms | p95 ms | CPU p50 ms | CPU p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for (endpoint, kind), values in sorted(times.items()):
        used = cpu.get((endpoint, kind)) or [0.0]
        print(
            f"| {endpoint} | {kind} | {len(values)} | {_ms(values, 0.5):.1f} | {_ms(values, 0.95):.1f} "
            f"| {_ms(used, 0.5):.1f} | {_ms(used, 0.95):.1f} |"
        )


async def run(args: argparse.Namespace) -> None:
    flavor = args.flavor
    if flavor == "timescale" and not timescaledb_installed():
        raise SystemExit("TimescaleDB is not installed for this PostgreSQL")
    root = Path(args.keep).resolve() if args.keep else throwaway_dir("bench-query")
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f"loaded-{flavor}-{args.rows}-{args.variant}"
    cluster = EmbeddedPostgres(root / f"pg-{flavor}", port=free_port(), timescale=flavor == "timescale")
    cluster.start()
    receiver = None
    try:
        dsn = cluster.admin_dsn(DATABASE)
        if not marker.exists():
            admin = await asyncpg.connect(cluster.admin_dsn())
            await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {DATABASE}")
            await admin.close()
            conn = await asyncpg.connect(dsn)
            await migrate(conn, flavor, load_migrations())
            for statement in VARIANTS[args.variant]:
                await conn.execute(statement)
            await conn.close()
            print(f"loading {args.rows:,} spans over {args.days} days ({flavor}, variant {args.variant})", flush=True)
            t0 = time.perf_counter()
            await load(dsn, flavor, args, lambda line: print(line, flush=True))
            print(f"  load took {time.perf_counter() - t0:.0f} s", flush=True)
            marker.touch()
        else:  # a kept cluster: bring it to this version's schema (a no-op when it is there)
            conn = await asyncpg.connect(dsn)
            await migrate(conn, flavor, load_migrations())
            await conn.close()
        s = await sample(dsn, args.seed)
        workdir = root / "receiver"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir()
        receiver = ReceiverProcess(dsn, workdir, maintenance__enabled="false", database__auto_migrate="false")
        await receiver.start()
        mix = query_mix(s, args.per_kind, args.seed)
        print(f"{len(mix)} requests, one at a time ({flavor}, variant {args.variant})", flush=True)
        assert receiver.proc is not None
        times, cpu = await run_mix(receiver.query_url + "/api/v1", mix, s, receiver.proc.pid, dsn)
        print_table(times, cpu)
    finally:
        if receiver is not None:
            await receiver.stop()
        if args.keep:
            cluster.stop()
        else:
            cluster.destroy()
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="spans to load")
    parser.add_argument("--days", type=float, default=2.0, help="the spans cover the last DAYS days")
    parser.add_argument("--metrics-interval-s", type=float, default=300.0, help="metric export interval")
    parser.add_argument("--metrics-instances", type=int, default=16, help="application instances exporting metrics")
    parser.add_argument("--flavor", choices=["native", "timescale"], default="native")
    parser.add_argument("--variant", choices=list(VARIANTS), default="current")
    parser.add_argument("--per-kind", type=int, default=40, help="requests of each kind in the mix")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="keep the loaded cluster in DIR and reuse it next time")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

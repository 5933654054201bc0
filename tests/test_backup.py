"""Backup and restore as docs/runbook.md ("Backup and restore") tells an operator to do it, with the real
pg_dump / pg_restore: a database with spans, metric points, log records, dead letters and rollups is
dumped, restored into a fresh database, and compared table by table and rollup row by rollup row.

Both schema flavors; the timescale one (hypertables, compressed chunks, rollup hypertables) needs the
extension's pre/post-restore steps and is skipped where TimescaleDB is not installed.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.storage import rollups
from receiver.storage.embedded import find_bindir
from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.storage.migrate import migrate
from receiver.storage.verify import verify
from receiver.telemetry.metrics import Metrics
from tests.conftest import DatabaseHandle, create_database, drop_database
from tests.support.spans import assert_rollups_match_raw, copy_spans, varied_rows

TABLES = ("llm_traces", "llm_metrics", "llm_logs", "dead_letters", "model_pricing", "schema_migrations")
ROLLUPS = {
    "llm_metrics_1min": "bucket, provider, model, service_name",
    "llm_metrics_1hour": "bucket, provider, model, service_name",
    "llm_metrics_1day": "bucket, provider, model, service_name",
    "cost_analysis_hourly": "bucket, provider, model, service_name, user_id, environment",
}
SETTINGS = MaintenanceSettings(rollup_delay_s=0.0)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
    return result


def tool(name: str) -> str:
    return str(find_bindir() / name)  # the server's own version: pg_dump refuses an older server's dump


async def populate(db: DatabaseHandle, flavor: str) -> None:
    conn = await db.connect()
    try:
        await migrate(conn, flavor)
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
        await copy_spans(conn, varied_rows(start, days=2, count=600, seed=11))
        await conn.execute(
            "INSERT INTO llm_metrics (ts, point_id, metric_name, metric_type, value, attributes, resource_attributes)"
            " SELECT now() - g * interval '1 minute', gen_random_uuid(), 'gen_ai.client.token.usage', 'sum', g,"
            " '{}', '{\"service.name\": \"svc\"}' FROM generate_series(1, 120) g"
        )
        await conn.execute(
            "INSERT INTO llm_logs (ts, record_id, body, attributes, resource_attributes)"
            " SELECT now() - g * interval '1 minute', gen_random_uuid(), 'log ' || g, '{}', '{}'"
            " FROM generate_series(1, 80) g"
        )
        await conn.execute(
            "INSERT INTO dead_letters (table_name, error, sqlstate, row_data) "
            "VALUES ('llm_traces', 'violates check constraint', '23514', '{\"span_name\": \"poison\"}')"
        )
    finally:
        await conn.close()


async def snapshot(db: DatabaseHandle) -> dict[str, object]:
    """Row counts of the tables and every rollup row, in a stable order."""
    conn = await db.connect()
    try:
        out: dict[str, object] = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
        for view, keys in ROLLUPS.items():
            out[view] = [tuple(r) for r in await conn.fetch(f"SELECT * FROM {view} ORDER BY {keys}")]
        return out
    finally:
        await conn.close()


async def maintenance_pass(db: DatabaseHandle, flavor: str) -> None:
    maintenance = Maintenance(db.connect, flavor, SETTINGS, Metrics())
    try:
        report = await maintenance.run_once()
    finally:
        await maintenance.shutdown()
    assert report.ok, report.errors


async def test_native_backup_restores_rows_and_rollups(pg_cluster, tmp_path: Path):
    source = await create_database(pg_cluster)
    target = await create_database(pg_cluster)  # CREATE DATABASE: empty, as `createdb` makes it
    try:
        await populate(source, "native")
        await maintenance_pass(source, "native")  # partitions moved out of DEFAULT, rollups built
        before = await snapshot(source)
        assert before["llm_traces"] == 600 and len(before["llm_metrics_1hour"]) > 10

        dump = tmp_path / "observatory.dump"
        run(tool("pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={source.dsn}")
        run(tool("pg_restore"), "--exit-on-error", "--no-owner", f"--dbname={target.dsn}", str(dump))

        assert await snapshot(target) == before
        # The rollup watermark came with the rows: the next pass adds nothing twice (restored rows keep
        # their ingested_at; only a partial restore of llm_traces needs `db maintain --rebuild-rollups`).
        await maintenance_pass(target, "native")
        assert await snapshot(target) == before
        conn = await target.connect()
        try:
            await assert_rollups_match_raw(conn)
            failed = [c.line() for c in await verify(conn) if not c.ok]
            assert not failed, failed
        finally:
            await conn.close()
    finally:
        await drop_database(source)
        await drop_database(target)


@pytest.mark.timescale
async def test_timescale_backup_restores_hypertables_and_rollups(timescale_cluster, tmp_path: Path):
    source = await create_database(timescale_cluster)
    target = await create_database(timescale_cluster)
    try:
        await populate(source, "timescale")
        conn = await source.connect()
        try:
            # Policies off (they would compress and drop at random moments), rollups brought up to date, and a
            # chunk compressed: the dump must carry compressed chunks too.
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000"
            )
            while not (await rollups.refresh(conn, 0.0)).caught_up:
                pass
            compressed = await conn.fetchval(
                "SELECT count(compress_chunk(c)) "
                "FROM show_chunks('llm_traces', older_than => now() - interval '1 day') c"
            )
            assert compressed >= 1
        finally:
            await conn.close()
        before = await snapshot(source)
        assert before["llm_traces"] == 600 and len(before["llm_metrics_1hour"]) > 10

        dump = tmp_path / "observatory.dump"
        psql = tool("psql")
        run(tool("pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={source.dsn}")
        run(psql, "--set=ON_ERROR_STOP=1", f"--dbname={target.dsn}", "-c", "CREATE EXTENSION IF NOT EXISTS timescaledb")
        run(psql, "--set=ON_ERROR_STOP=1", f"--dbname={target.dsn}", "-c", "SELECT timescaledb_pre_restore()")
        run(tool("pg_restore"), "--exit-on-error", "--no-owner", f"--dbname={target.dsn}", str(dump))
        run(psql, "--set=ON_ERROR_STOP=1", f"--dbname={target.dsn}", "-c", "SELECT timescaledb_post_restore()")

        assert await snapshot(target) == before
        conn = await target.connect()
        try:
            assert await conn.fetchval("SELECT count(*) FROM timescaledb_information.hypertables") >= 3
            assert (await rollups.refresh(conn, 0.0)).spans == 0, "the watermark came with the dump"
            await assert_rollups_match_raw(conn)
            # The jobs came back as they were dumped (unscheduled above); schedule them as in production.
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => true) FROM timescaledb_information.jobs WHERE job_id >= 1000"
            )
            failed = [c.line() for c in await verify(conn) if not c.ok]
            assert not failed, failed
        finally:
            await conn.close()
        assert await snapshot(target) == before, "a refresh after the restore changes nothing"
    finally:
        await drop_database(source)
        await drop_database(target)

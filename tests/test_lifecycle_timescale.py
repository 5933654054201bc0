"""TimescaleDB flavor, against a real TimescaleDB (skipped where the extension is not installed):
hypertables, rollups equal to direct aggregates and to the native flavor's rollups, the upgrade from
continuous aggregates (migrations 010 and 015), compression and retention policies doing their job,
and `db verify` passing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver import schema
from receiver.storage import rollups
from receiver.storage.copy import copy_rows
from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.storage.migrate import migrate
from receiver.storage.verify import verify
from receiver.telemetry.metrics import Metrics
from tests.conftest import create_database, drop_database
from tests.support.spans import assert_rollups_match_raw, copy_spans, span_row, varied_rows

pytestmark = pytest.mark.timescale

STORES = ("llm_metrics_1min_store", "llm_metrics_1hour_store", "llm_metrics_1day_store", "cost_analysis_hourly_store")
VIEWS = ("llm_metrics_1min", "llm_metrics_1hour", "llm_metrics_1day", "cost_analysis_hourly")


def midnight(days: int = 0) -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days)


@pytest.fixture
async def ts_database(timescale_cluster):
    db = await create_database(timescale_cluster)
    yield db
    await drop_database(db)


async def unschedule_jobs(conn) -> None:
    """Background jobs would start within seconds of the policies (migration 010's refresh jobs at once):
    stop them, wait for a run in progress to end, and run them explicitly."""
    from tests.support.wait import wait_until

    await conn.execute(
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000"
    )

    async def none_running() -> bool:
        return not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type NOT IN ('client backend') AND application_name ~ 'Policy \\[[0-9]+\\]$'"
        )

    await wait_until(none_running, what="no TimescaleDB job running")


async def refresh_all(conn) -> None:
    """The rollups brought up to date. From migration 015 on, the maintenance task's incremental passes.
    Before it, the continuous aggregates, fine before coarse: 1hour is built from 1min, 1day from 1hour
    (outside a transaction), in one batch: TimescaleDB 2.28 otherwise refreshes bucket by bucket (~3 s per
    day of a 1-minute aggregate here, whatever the rows)."""
    if await conn.fetchval("SELECT to_regclass('rollup_watermarks') IS NOT NULL"):
        while not (await rollups.refresh(conn, 0.0)).caught_up:
            pass
        return
    one_batch = '{"buckets_per_batch": 100000000}'
    for store in STORES:
        await conn.execute(f"CALL refresh_continuous_aggregate('{store}', NULL, NULL, options => '{one_batch}')")


async def ingested_on_time(conn) -> None:
    """Spans copied now with old times, as if each had arrived a minute after its start (the rollups
    leave out spans dated more than rollups.LATE_LIMIT before their ingestion in this flavor)."""
    await conn.execute("UPDATE llm_traces SET ingested_at = ts + interval '1 minute'")


async def job_id(conn, proc: str, target: str) -> int:
    return await conn.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = $1 AND hypertable_name = $2", proc, target
    )


async def test_timescale_schema_is_complete_and_verifies(ts_database):
    conn = await ts_database.connect()
    try:
        report = await migrate(conn)  # auto: the extension is preloaded here
        assert report.flavor == "timescale"
        held = "SELECT count(*) FROM timescaledb_information.job_stats WHERE next_start = 'infinity'"
        assert await conn.fetchval(held) == 0, "migrate holds jobs back while it runs, and lets them go after"
        hypertables = {
            r["hypertable_name"]
            for r in await conn.fetch("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        assert {"llm_traces", "llm_metrics", "llm_logs"} <= hypertables
        checks = await verify(conn)
        failed = [c.line() for c in checks if not c.ok]
        assert not failed, failed
        names = {c.name for c in checks}
        assert "retention llm_metrics_1day_store" in names and "compression llm_traces" in names
        # The maintenance task only reports the jobs in this flavor.
        maintenance = Maintenance(ts_database.connect, "timescale", MaintenanceSettings(), Metrics())
        try:
            pass_report = await maintenance.run_once()
        finally:
            await maintenance.shutdown()
        # Retention of the rollup stores (5, migration 016's included), compression (3) and retention (3) of
        # the signal tables; the rollups are the maintenance pass's own work (migration 015), no refresh jobs.
        assert pass_report.ok and len(pass_report.timescale_jobs) == 11, pass_report.timescale_jobs
        assert pass_report.rollups is not None and pass_report.rollups.caught_up
    finally:
        await conn.close()


async def test_rollups_equal_direct_aggregates_and_the_native_rollups(ts_database, database):
    ts = await ts_database.connect()
    native = await database.connect()
    maintenance = Maintenance(database.connect, "native", MaintenanceSettings(rollup_delay_s=0.0), Metrics())
    try:
        await migrate(ts, "timescale")
        await unschedule_jobs(ts)
        await migrate(native, "native")
        rows = varied_rows(midnight(-3), days=4, count=1500, seed=11)
        for conn in (ts, native):
            await copy_spans(conn, rows)
        await refresh_all(ts)
        assert (await maintenance.run_once()).ok
        await assert_rollups_match_raw(ts)

        # Late spans for old buckets: added to them by the next pass.
        late = varied_rows(midnight(-3), days=4, count=200, seed=12)
        for conn in (ts, native):
            await copy_spans(conn, late)
        await refresh_all(ts)
        assert (await maintenance.run_once()).ok
        await assert_rollups_match_raw(ts)

        # Same names, same answers in both flavors (the average may differ in its last float bits).
        for view in VIEWS:
            order = "ORDER BY bucket, project_id, provider, model, service_name" + (
                ", user_id, environment" if "cost" in view else ""
            )
            a = [dict(r) for r in await ts.fetch(f"SELECT * FROM {view} {order}")]
            b = [dict(r) for r in await native.fetch(f"SELECT * FROM {view} {order}")]
            assert len(a) == len(b) > 0
            for x, y in zip(a, b, strict=True):
                assert abs(x.pop("avg_latency_ms") - y.pop("avg_latency_ms")) <= 1e-9 * y["max_latency_ms"]
                assert x == y, view
    finally:
        await maintenance.shutdown()
        await native.close()
        await ts.close()


async def test_compression_and_retention_policies_run(ts_database):
    conn = await ts_database.connect()
    try:
        await migrate(conn, "timescale")
        await unschedule_jobs(conn)
        old = [span_row(midnight(-10) + timedelta(minutes=i)) for i in range(20)]
        expired = [span_row(midnight(-100) + timedelta(minutes=i)) for i in range(5)]
        await copy_spans(conn, [*old, *expired, span_row(datetime.now(UTC) - timedelta(minutes=1))])
        await ingested_on_time(conn)

        await conn.execute("CALL run_job($1)", await job_id(conn, "policy_compression", "llm_traces"))
        compressed = await conn.fetch(
            "SELECT range_start FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'llm_traces' AND is_compressed"
        )
        assert {r["range_start"] for r in compressed} == {midnight(-10), midnight(-100)}
        # A client retry of spans now in a compressed chunk is still stored once (the writers' idempotent path).
        result = await copy_rows(conn, schema.TRACES_TABLE, schema.TRACES_COLUMNS, old[:5])
        assert (result.inserted, result.duplicates) == (0, 5)
        await refresh_all(conn)
        await assert_rollups_match_raw(conn)

        await conn.execute("CALL run_job($1)", await job_id(conn, "policy_retention", "llm_traces"))
        assert await conn.fetchval("SELECT count(*) FROM llm_traces") == 21, "the 100-day-old chunk is dropped"
        assert await conn.fetchval("SELECT min(ts) FROM llm_traces") == midnight(-10)
        # The rollups keep what raw retention dropped (1day keeps 1095 days).
        assert await conn.fetchval("SELECT sum(request_count) FROM llm_metrics_1day") == 26
    finally:
        await conn.close()


async def test_spans_dated_over_a_week_before_their_ingestion_are_stored_but_not_rolled_up(ts_database):
    """rollups.LATE_LIMIT: the passes do not look into chunks old enough to be compressed, so a span dated
    more than 7 days before it arrives is stored and left out of the rollups; one dated 6 days back is in."""
    conn = await ts_database.connect()
    try:
        await migrate(conn, "timescale")
        await unschedule_jobs(conn)
        now = datetime.now(UTC)
        six_days, eight_days = now - timedelta(days=6), now - timedelta(days=8)
        await copy_spans(conn, [span_row(six_days), span_row(eight_days), span_row(now - timedelta(minutes=1))])
        await refresh_all(conn)
        assert await conn.fetchval("SELECT count(*) FROM llm_traces") == 3
        assert await conn.fetchval("SELECT sum(request_count) FROM llm_metrics_1min") == 2
        week_ago = now - timedelta(days=7)
        assert await conn.fetchval("SELECT count(*) FROM llm_metrics_1min WHERE bucket < $1", week_ago) == 0
        # The chunks' BRIN indexes leave summarizing to the maintenance task (autovacuum's queue overflows).
        options = await conn.fetch(
            "SELECT c.relname, c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam JOIN pg_inherits h ON h.inhrelid = i.indrelid "
            "WHERE a.amname = 'brin' AND h.inhparent = 'llm_traces'::regclass"
        )
        assert len(options) >= 2 * 3, options  # ts and ingested_at, on the three spans' chunks
        assert all("autosummarize=off" in (r["reloptions"] or []) for r in options), options
    finally:
        await conn.close()


async def test_large_values_in_new_chunks_are_lz4_compressed(ts_database):
    """Migration 008 on a hypertable: chunks created afterwards take lz4 from it."""
    conn = await ts_database.connect()
    try:
        await migrate(conn)
        row = list(span_row(datetime.now(UTC)))
        row[schema.TRACES_COLUMNS.index("attributes")] = '{"p": "%s"}' % ("You are a helpful assistant. " * 700)
        await copy_spans(conn, [tuple(row)])
        methods = await conn.fetch("SELECT pg_column_compression(attributes) AS m FROM llm_traces")
        assert [r["m"] for r in methods] == ["lz4"]
    finally:
        await conn.close()


async def test_upgrades_keep_rollup_history_group_by_project_then_move_to_incremental_rollups(ts_database):
    """Migration 010 recreates the continuous aggregates with project_id: rollup rows older than its
    cutover (28 days back) are kept as history, which outlives the raw spans; newer buckets are computed
    again from the raw spans, per project, and the views stay exact over both. Migration 015 replaces the
    continuous aggregates by stores the maintenance task keeps: every bucket before its floor (6 days back)
    is kept as it was, newer ones are recomputed from the raw spans, and the views stay exact."""
    from receiver.storage.migrate import load_migrations

    conn = await ts_database.connect()
    try:
        await migrate(conn, "timescale", [m for m in load_migrations() if m.version < 10])
        await unschedule_jobs(conn)
        before = varied_rows(midnight(-35), days=33, count=1200, seed=21, projects=(None,))
        await copy_spans(conn, before, before_tenancy=True)
        await refresh_all(conn)
        old_days = {
            r["bucket"]: r["n"]
            for r in await conn.fetch("SELECT bucket, sum(request_count) AS n FROM llm_metrics_1day GROUP BY 1")
        }
        upgrade = await migrate(conn, "timescale", [m for m in load_migrations() if m.version < 15])
        assert upgrade.applied[0] == "010_tenancy"
        await unschedule_jobs(conn)
        cutover = midnight(-28)
        history = await conn.fetchval("SELECT count(*) FROM llm_metrics_1min_history")
        assert history > 0 and await conn.fetchval("SELECT max(bucket) < $1 FROM llm_metrics_1min_history", cutover)

        await copy_spans(conn, varied_rows(midnight(-20), days=20, count=900, seed=22))  # None and two projects
        await refresh_all(conn)
        await assert_rollups_match_raw(conn)
        views_before = {view: sorted(map(tuple, await conn.fetch(f"SELECT * FROM {view}")), key=repr) for view in VIEWS}

        assert (await migrate(conn, "timescale")).applied[0] == "015_rollups_kept_incrementally"
        floor = midnight(-6)
        assert await conn.fetchval("SELECT ts_floor FROM rollup_watermarks") == floor
        for view in VIEWS:  # kept: every bucket before the floor; the newer ones wait for the first pass
            kept = sorted(map(tuple, await conn.fetch(f"SELECT * FROM {view}")), key=repr)
            assert kept == [r for r in views_before[view] if r[0] < floor] and kept, view
        await refresh_all(conn)
        await assert_rollups_match_raw(conn)  # the recomputed buckets too (sums of floats in another order)
        # Everything verifies but what this test did to the jobs: unscheduled them (cancelling runs in progress).
        failed = [c.line() for c in await verify(conn) if not c.ok and not c.name.startswith("timescaledb jobs")]
        assert not failed, failed

        # Raw spans before the cutover are dropped by retention: their rollups stay, as before the upgrades.
        await conn.execute("SELECT drop_chunks('llm_traces', older_than => $1::timestamptz)", cutover)
        await refresh_all(conn)
        kept = {
            r["bucket"]: r["n"]
            for r in await conn.fetch(
                "SELECT bucket, sum(request_count) AS n FROM llm_metrics_1day WHERE bucket < $1 GROUP BY 1", cutover
            )
        }
        assert kept == {day: n for day, n in old_days.items() if day < cutover} and kept
    finally:
        await conn.close()


async def test_partition_hours_sets_the_chunk_interval_of_new_chunks(ts_database):
    """maintenance.partition_hours applies to TimescaleDB too: the maintenance pass sets the hypertables'
    chunk interval (new chunks), `db verify` checks it against the setting, a new chunk has that length."""
    conn = await ts_database.connect()
    settings = MaintenanceSettings(partition_hours=12)
    try:
        await migrate(conn, "timescale")
        await unschedule_jobs(conn)
        maintenance = Maintenance(ts_database.connect, "timescale", settings, Metrics())
        try:
            assert (await maintenance.run_once()).ok
        finally:
            await maintenance.shutdown()

        def hypertable_failures(checks) -> list[str]:
            return [c.name for c in checks if c.name.startswith("hypertable ") and not c.ok]

        assert hypertable_failures(await verify(conn, partition_hours=12)) == []
        assert hypertable_failures(await verify(conn)) == ["hypertable llm_traces", "hypertable llm_logs"]
        await copy_spans(conn, [span_row(midnight() + timedelta(hours=7))])
        start, end = await conn.fetchrow(
            "SELECT range_start, range_end FROM timescaledb_information.chunks WHERE hypertable_name = 'llm_traces'"
        )
        assert end - start == timedelta(hours=12)
    finally:
        await conn.close()

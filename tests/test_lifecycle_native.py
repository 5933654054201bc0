"""Native flavor data lifecycle, against a real PostgreSQL: daily partitions (ahead, late rows moved out
of DEFAULT, retention), rollups equal to direct aggregates of the raw spans (late data and uncommitted
writers included), safety while writers COPY, and an upgrade from schema version 002 that keeps data."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from receiver.storage import partitions
from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.storage.migrate import load_migrations, migrate
from receiver.telemetry.metrics import Metrics
from tests.support.spans import assert_rollups_match_raw, copy_spans, span_row, varied_rows

SETTINGS = MaintenanceSettings(rollup_delay_s=0.0, lock_timeout_ms=5000, partition_hours=24)  # whole days


def midnight(days: int = 0) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def partition_counts(conn, table: str = "llm_traces") -> dict[str, int]:
    rows = await conn.fetch(f"SELECT tableoid::regclass::text AS part, count(*) AS n FROM {table} GROUP BY 1")
    return {r["part"]: r["n"] for r in rows}


async def test_partitions_ahead_late_rows_moved_and_expired_days_dropped(database):
    conn = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        await migrate(conn, "native")
        late = [span_row(midnight(-d) + timedelta(hours=h)) for d in (1, 2, 3) for h in range(5)]
        expired = [span_row(midnight(-100) + timedelta(hours=3))]
        await copy_spans(conn, [*late, span_row(midnight() + timedelta(minutes=1)), *expired])
        assert await partition_counts(conn) == {"llm_traces_default": 17}, "no daily partition exists yet"

        report = await maintenance.run_once()
        assert report.ok, report.errors
        days = (await partitions.list_partitions(conn, "llm_traces")).days
        assert days == {midnight(d).date() for d in range(-3, 4)}, "3 late days, today and 3 days ahead"
        for table in ("llm_metrics", "llm_logs"):
            assert (await partitions.list_partitions(conn, table)).days == {midnight(d).date() for d in range(4)}
        name = partitions.partition_name
        assert report.partitions.rows_moved == {
            name("llm_traces", midnight(-3).date()): 5,
            name("llm_traces", midnight(-2).date()): 5,
            name("llm_traces", midnight(-1).date()): 5,
            name("llm_traces", midnight().date()): 1,
        }
        assert report.partitions.rows_expired == {"llm_traces": 1}
        counts = await partition_counts(conn)
        assert "llm_traces_default" not in counts and sum(counts.values()) == 16
        metrics = maintenance.metrics
        assert sample(metrics, "observatory_partitions_created_total", table="llm_traces") == 7
        assert sample(metrics, "observatory_partition_default_rows_moved_total", table="llm_traces") == 16
        assert sample(metrics, "observatory_partitions_days_ahead", table="llm_traces") == 3
        assert maintenance.health()["partitions"]["llm_traces"]["days_ahead"] == 3

        # A partition past retention (90 days) is dropped, with its rows; nothing else changes.
        old_day = midnight(-95).date()
        await partitions.create_day(conn, "llm_traces", old_day, "llm_traces_default", 1000)
        await copy_spans(conn, [span_row(midnight(-95) + timedelta(hours=1))])
        again = await maintenance.run_once()
        assert again.ok, again.errors
        assert again.partitions.dropped == [name("llm_traces", old_day)] and again.partitions.created == []
        assert await conn.fetchval("SELECT count(*) FROM llm_traces") == 16
        assert sample(metrics, "observatory_partitions_dropped_total", table="llm_traces") == 1
    finally:
        await maintenance.shutdown()
        await conn.close()


async def test_rollups_equal_direct_aggregates_including_late_spans(database):
    conn = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        await migrate(conn, "native")
        await copy_spans(conn, varied_rows(midnight(-3), days=4, count=1500, seed=1))
        first = await maintenance.run_once()
        assert first.ok, first.errors
        llm_spans = await conn.fetchval(
            "SELECT count(*) FROM llm_traces WHERE provider IS NOT NULL OR model IS NOT NULL"
        )
        assert first.rollups.spans == llm_spans
        groups = await assert_rollups_match_raw(conn)
        assert groups["llm_metrics_1min"] > groups["llm_metrics_1hour"] > groups["llm_metrics_1day"] >= 4

        # Late spans (days old) and a few more for the same minutes: added to their buckets, counted once.
        await copy_spans(conn, varied_rows(midnight(-3), days=4, count=300, seed=2))
        second = await maintenance.run_once()
        assert second.ok and second.rollups.spans > 0
        await assert_rollups_match_raw(conn)
        assert (await maintenance.run_once()).rollups.spans == 0, "nothing new: nothing added"

        # Coarse = exact merge of fine: the hour's histogram is the sum of its minutes' histograms.
        mismatched = await conn.fetchval(
            """
            SELECT count(*) FROM llm_metrics_1hour h
            JOIN (SELECT date_bin('1 hour', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour, project_id,
                         provider, model, service_name, latency_histogram_merge(latency_histogram) AS merged
                  FROM llm_metrics_1min GROUP BY 1, 2, 3, 4, 5) m
              ON m.hour = h.bucket AND m.project_id IS NOT DISTINCT FROM h.project_id
             AND m.provider IS NOT DISTINCT FROM h.provider
             AND m.model IS NOT DISTINCT FROM h.model AND m.service_name IS NOT DISTINCT FROM h.service_name
            WHERE m.merged <> h.latency_histogram
            """
        )
        assert mismatched == 0

        # Rebuilding from scratch gives the same rollups.
        rebuilt = await maintenance.run_once(rebuild_rollups=True)
        assert rebuilt.ok and rebuilt.rollups.spans == await conn.fetchval(
            "SELECT count(*) FROM llm_traces WHERE provider IS NOT NULL OR model IS NOT NULL"
        )
        await assert_rollups_match_raw(conn)
    finally:
        await maintenance.shutdown()
        await conn.close()


async def test_an_open_writer_holds_the_rollups_back_and_nothing_is_lost(database):
    """Spans written by a transaction that is still open when a pass runs must be rolled up by a later
    pass (their ingested_at is older than the pass): the horizon waits for that transaction."""
    conn = await database.connect()
    writer = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        await migrate(conn, "native")
        await maintenance.run_once()
        open_tx = writer.transaction()
        await open_tx.start()
        await copy_spans(writer, [span_row(midnight() + timedelta(minutes=5), duration_ms=7.0) for _ in range(3)])
        await copy_spans(conn, [span_row(midnight() + timedelta(minutes=5), duration_ms=9.0) for _ in range(2)])
        during = await maintenance.run_once()
        assert during.ok, during.errors
        seen = await conn.fetchval("SELECT coalesce(sum(request_count), 0) FROM llm_metrics_1min")
        assert seen == 0, "the committed rows came after the open transaction started: they wait too"
        await open_tx.commit()
        after = await maintenance.run_once()
        assert after.rollups.spans == 5
        await assert_rollups_match_raw(conn)
    finally:
        await maintenance.shutdown()
        await writer.close()
        await conn.close()


async def test_partitions_are_created_safely_while_writers_copy(database):
    """Writers keep COPYing rows for days without a partition (they land in DEFAULT) while passes
    create those days' partitions and move the rows: every row ends up stored once, in its day."""
    conn = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        await migrate(conn, "native")
        written = 0
        done = asyncio.Event()

        async def writer(seed: int) -> None:
            nonlocal written
            rng = random.Random(seed)
            wconn = await database.connect()
            try:
                for _ in range(15):
                    rows = [
                        span_row(midnight(-rng.randint(1, 8)) + timedelta(seconds=rng.randrange(80_000)))
                        for _ in range(100)
                    ]
                    async with wconn.transaction():
                        await copy_spans(wconn, rows)
                    written += len(rows)
                    await asyncio.sleep(0)
            finally:
                await wconn.close()

        async def maintainer() -> None:
            while not done.is_set():
                report = await maintenance.run_once()
                assert "connection" not in report.errors, report.errors

        passes = asyncio.create_task(maintainer())
        await asyncio.gather(writer(1), writer(2))
        done.set()
        await passes
        for _ in range(3):  # a pass moves at most max_default_days_per_pass (7) days out of DEFAULT
            final = await maintenance.run_once()
            assert final.ok, final.errors
            if not final.partitions.deferred:
                break
        counts = await partition_counts(conn)
        assert "llm_traces_default" not in counts
        assert sum(counts.values()) == written == 3000
        assert await conn.fetchval("SELECT count(DISTINCT (trace_id, span_id)) FROM llm_traces") == written
        misplaced = await conn.fetchval(
            "SELECT count(*) FROM llm_traces WHERE tableoid::regclass::text <> "
            "'llm_traces_p' || to_char(ts AT TIME ZONE 'UTC', 'YYYYMMDD')"
        )
        assert misplaced == 0
        await assert_rollups_match_raw(conn)
    finally:
        await maintenance.shutdown()
        await conn.close()


async def test_upgrade_from_version_002_keeps_rows_and_rolls_them_up(database):
    conn = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        old = [m for m in load_migrations() if m.version <= 2]
        await migrate(conn, "native", old)
        rows = varied_rows(midnight(-2), days=3, count=400, seed=3, projects=(None,))
        await copy_spans(conn, rows, before_tenancy=True)
        report = await migrate(conn, "native")
        assert report.applied[0] == "003_supporting_tables" and report.already == 2
        assert await conn.fetchval("SELECT count(*) FROM llm_traces") == len(rows)
        assert await conn.fetchval("SELECT count(*) FROM llm_traces WHERE ingested_at IS NULL") == 0
        pass_report = await maintenance.run_once()
        assert pass_report.ok, pass_report.errors
        assert await conn.fetchval("SELECT count(*) FROM llm_traces") == len(rows)
        await assert_rollups_match_raw(conn)
        assert await conn.fetchval("SELECT sum(request_count) FROM llm_metrics_1day") == sum(
            1 for r in rows if r[10] is not None or r[11] is not None
        )
    finally:
        await maintenance.shutdown()
        await conn.close()


async def roll_up_as_before_tenancy(conn) -> None:
    """What a receiver of the version before migration 010 left in the rollup stores for the spans stored:
    every group without a project dimension, and the watermark past them (this version's rollup code
    needs the project_id column)."""
    widths = {"llm_metrics_1min": "1 minute", "llm_metrics_1hour": "1 hour", "llm_metrics_1day": "1 day"}
    measures = (
        "count(*), count(*) FILTER (WHERE status_code = 'error'), coalesce(sum(input_tokens), 0), "
        "coalesce(sum(output_tokens), 0), coalesce(sum(total_tokens), 0), {costs}coalesce(sum(total_cost), 0), "
        "sum(duration_ms), min(duration_ms), max(duration_ms), latency_histogram(duration_ms)"
    )
    llm = "WHERE provider IS NOT NULL OR model IS NOT NULL"
    origin = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
    for view, width in widths.items():
        await conn.execute(
            f"INSERT INTO {view}_store SELECT date_bin('{width}', ts, {origin}), provider, model, service_name, "
            f"{measures.format(costs='')} FROM llm_traces {llm} GROUP BY 1, 2, 3, 4"
        )
    costs = "coalesce(sum(input_cost), 0), coalesce(sum(output_cost), 0), "
    await conn.execute(
        f"INSERT INTO cost_analysis_hourly_store SELECT date_bin('1 hour', ts, {origin}), provider, model, "
        f"service_name, user_id, environment, {measures.format(costs=costs)} FROM llm_traces {llm} "
        "GROUP BY 1, 2, 3, 4, 5, 6"
    )
    await conn.execute(
        "UPDATE rollup_watermarks SET watermark = (SELECT max(ingested_at) + interval '1 microsecond' "
        "FROM llm_traces) WHERE source = 'llm_traces'"
    )


async def test_upgrade_to_tenancy_keeps_rows_and_rollups_and_groups_new_spans_by_project(database):
    """Migration 010 on a database with spans and rollups: both kept (project NULL), and spans of two
    projects sent afterwards, into the same buckets, are rolled up apart from them, exactly."""
    conn = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        await migrate(conn, "native", [m for m in load_migrations() if m.version < 10])
        before = varied_rows(midnight(-2), days=3, count=600, seed=5, projects=(None,))
        await copy_spans(conn, before, before_tenancy=True)
        await roll_up_as_before_tenancy(conn)
        rolled_before = await conn.fetch("SELECT * FROM llm_metrics_1day_store ORDER BY 1, 2, 3, 4")
        report = await migrate(conn, "native")
        assert "010_tenancy" in report.applied
        assert await conn.fetchval("SELECT count(*) FROM llm_traces WHERE project_id IS NULL") == len(before)
        rolled_after = await conn.fetch(
            "SELECT bucket, provider, model, service_name, request_count, total_cost, latency_histogram "
            "FROM llm_metrics_1day_store ORDER BY 1, 2, 3, 4"
        )
        assert [tuple(r) for r in rolled_after] == [
            (
                r["bucket"],
                r["provider"],
                r["model"],
                r["service_name"],
                r["request_count"],
                r["total_cost"],
                r["latency_histogram"],
            )
            for r in rolled_before
        ], "the rollups survive the migration unchanged"
        await copy_spans(conn, varied_rows(midnight(-2), days=3, count=600, seed=6))  # None and two projects
        assert (await maintenance.run_once()).ok
        await assert_rollups_match_raw(conn)
        per_project = await conn.fetch(
            "SELECT project_id, sum(request_count) AS n FROM cost_analysis_hourly GROUP BY 1 ORDER BY 1"
        )
        raw = await conn.fetch(
            "SELECT project_id, count(*) AS n FROM llm_traces WHERE provider IS NOT NULL OR model IS NOT NULL "
            "GROUP BY 1 ORDER BY 1"
        )
        assert [tuple(r) for r in per_project] == [tuple(r) for r in raw] and len(raw) == 3
        # Cost per tenant per hour: one range of the (project_id, bucket) index (seq scans off: the table is
        # small enough here that the planner would rather read it all).
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT bucket, sum(total_cost) FROM cost_analysis_hourly "
                "WHERE project_id = $1 AND bucket >= now() - interval '7 days' GROUP BY bucket",
                raw[0]["project_id"],
            )
        )
        await conn.execute("RESET enable_seqscan")
        assert "cost_analysis_hourly_store_project_bucket_idx" in plan, plan
    finally:
        await maintenance.shutdown()
        await conn.close()


async def test_expired_rollup_rows_are_deleted(database):
    conn = await database.connect()
    short = MaintenanceSettings(
        rollup_delay_s=0.0,
        retention_days={**SETTINGS.retention_days, "llm_metrics_1min": 2, "cost_analysis_hourly": 3},
    )
    maintenance = Maintenance(database.connect, "native", short, Metrics())
    try:
        await migrate(conn, "native")
        now = datetime.now(UTC)
        await copy_spans(conn, [span_row(now - timedelta(days=d, hours=1)) for d in range(6)])
        report = await maintenance.run_once()
        assert report.ok, report.errors
        # 1min keeps 2 days (spans 0 and 1 day old), cost hourly 3 days, 1day its default 1095 days.
        assert report.rollups.rows_expired == {"llm_metrics_1min": 4, "cost_analysis_hourly": 3}
        assert await conn.fetchval("SELECT count(*) FROM llm_metrics_1min") == 2
        assert await conn.fetchval("SELECT count(*) FROM llm_metrics_1day") == 6
    finally:
        await maintenance.shutdown()
        await conn.close()


async def test_large_values_are_lz4_compressed_in_old_new_and_default_partitions(database):
    """Migration 008 switches TOAST compression to lz4 (pglz was PostgreSQL's largest cost under load):
    on partitions that existed before it, on those created after it, and on DEFAULT."""
    from receiver import schema

    conn = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        lz4 = await conn.fetchval(
            "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        if not lz4:
            import pytest

            pytest.skip("this PostgreSQL is built without lz4: migration 008 keeps pglz")
        await migrate(conn, "native", [m for m in load_migrations() if m.version <= 7])
        assert (await maintenance.run_once(partitions_only=True)).ok  # partitions for today and ahead, before 008
        assert (await migrate(conn, "native", [m for m in load_migrations() if m.version <= 8])).applied == [
            "008_toast_lz4"
        ]
        await partitions.create_day(conn, "llm_traces", midnight(-5).date(), "llm_traces_default", 1000)  # after
        prompt = "You are a helpful assistant. " * 700  # ~20 KB: compressed out of line
        index = schema.TRACES_COLUMNS.index("attributes")
        rows = []
        for ts in (midnight() + timedelta(hours=1), midnight(-5) + timedelta(hours=1), midnight(-30)):
            row = list(span_row(ts))
            row[index] = f'{{"gen_ai.input.messages": "{prompt}"}}'
            rows.append(tuple(row))
        await copy_spans(conn, rows, before_tenancy=True)
        stored = await conn.fetch(
            "SELECT tableoid::regclass::text AS part, pg_column_compression(attributes) AS method FROM llm_traces"
        )
        assert {r["part"]: r["method"] for r in stored} == {
            partitions.partition_name("llm_traces", midnight().date()): "lz4",
            partitions.partition_name("llm_traces", midnight(-5).date()): "lz4",
            "llm_traces_default": "lz4",
        }
    finally:
        await maintenance.shutdown()
        await conn.close()


async def test_shorter_partitions_cover_today_ahead_and_late_rows_and_a_changed_length_keeps_old_ones(database):
    """maintenance.partition_hours = 6: the day is tiled by 6-hour partitions ahead of the writes, a late
    row gets its 6-hour slot, `db verify` accepts the layout; changing the length later keeps every
    existing partition and only fills the time no partition covers."""
    from receiver.storage.verify import verify

    conn = await database.connect()
    six = MaintenanceSettings(rollup_delay_s=0.0, lock_timeout_ms=5000, partition_days_ahead=1, partition_hours=6)
    try:
        await migrate(conn, "native")
        await copy_spans(conn, [span_row(midnight(-2) + timedelta(hours=13))])  # late: lands in DEFAULT
        report = await Maintenance(database.connect, "native", six, Metrics()).run_once()
        assert report.ok, report.errors
        state = await partitions.list_partitions(conn, "llm_traces")
        ranges = sorted(state.ranges.values())
        assert ranges[0] == (midnight(-2) + timedelta(hours=12), midnight(-2) + timedelta(hours=18))
        assert ranges[1:] == [
            (midnight() + timedelta(hours=6 * i), midnight() + timedelta(hours=6 * (i + 1))) for i in range(8)
        ]
        assert report.partitions.rows_moved == {
            partitions.partition_name("llm_traces", ranges[0][0], timedelta(hours=6)): 1
        }
        assert partitions.partition_name("llm_traces", ranges[0][0], timedelta(hours=6)).endswith("_12")
        checks = await verify(conn, partition_days_ahead=1, partition_hours=6)
        assert all(c.ok for c in checks if c.name.startswith("partitions of")), [c for c in checks if not c.ok]
        # Back to whole days with 3 days ahead: the 6-hour partitions stay, the days after them are daily.
        daily = MaintenanceSettings(rollup_delay_s=0.0, lock_timeout_ms=5000, partition_hours=24)
        again = await Maintenance(database.connect, "native", daily, Metrics()).run_once()
        assert again.ok, again.errors
        after = await partitions.list_partitions(conn, "llm_traces")
        assert set(state.ranges.items()) <= set(after.ranges.items())
        assert after.days == {midnight(2).date(), midnight(3).date()}
        assert after.covered_until(midnight()) == midnight(4)
        await copy_spans(
            conn, [span_row(midnight(1) + timedelta(hours=20)), span_row(midnight(3) + timedelta(hours=1))]
        )
        assert await conn.fetchval("SELECT count(*) FROM llm_traces_default") == 0
    finally:
        await conn.close()


async def test_a_rollup_pass_summarizes_the_new_brin_ranges_first(database):
    """Without it, every pass re-read every page written since autovacuum last summarized (its work-item
    queue drops most requests at production rates): the pass's cost grew with the partition. After a
    pass, nothing in the receiving partition is left unsummarized, and the rollups still equal the raw
    spans."""
    conn = await database.connect()
    maintenance = Maintenance(database.connect, "native", SETTINGS, Metrics())
    try:
        await migrate(conn, "native")
        assert (await maintenance.run_once()).ok  # today's partitions
        now = datetime.now(UTC) - timedelta(minutes=1)
        # ~700 pages of ~500-byte rows: many 32-page ranges, none summarized yet.
        await copy_spans(conn, [span_row(now) for _ in range(12000)])
        part = await conn.fetchval("SELECT tableoid::regclass::text FROM llm_traces LIMIT 1")
        index = await conn.fetchval(
            "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = $1::regclass AND a.amname = 'brin' "
            "AND pg_get_indexdef(i.indexrelid) LIKE '%(ingested_at)%'",
            part,
        )
        report = await maintenance.run_once()
        assert report.ok and report.rollups is not None
        assert report.rollups.brin_ranges_summarized > 10, report.rollups
        assert await conn.fetchval("SELECT brin_summarize_new_values($1::regclass)", index) == 0
        await assert_rollups_match_raw(conn)
        # ... so autovacuum is not asked to (migration 014; partitions made since switch it off when attached).
        asking = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
            "WHERE a.amname = 'brin' AND c.relkind = 'i' AND NOT c.reloptions @> ARRAY['autosummarize=off']"
        )
        assert asking == 0
    finally:
        await maintenance.shutdown()
        await conn.close()


def test_recent_partitions_are_those_within_a_day_of_now():
    from receiver.storage.brin import recent_partitions

    now = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
    ranges = {
        f"p{h}": (now.replace(hour=0) + timedelta(hours=h), now.replace(hour=0) + timedelta(hours=h + 6))
        for h in range(-48, 72, 6)
    }
    chosen = recent_partitions(ranges, now)
    day = timedelta(days=1)
    assert chosen == sorted(n for n, (lo, hi) in ranges.items() if hi > now - day and lo < now + day)
    assert "p12" in chosen and "p-48" not in chosen and "p42" not in chosen


async def test_histogram_slots_count_every_duration_as_the_per_span_aggregate(database):
    """Migration 017's bucket expression and slot adder give, for every edge of the layout (zero, negative,
    the underflow and overflow bounds, NaN, infinities, NULL, bucket boundaries), the histogram that
    migration 005's per-span aggregate gives."""
    conn = await database.connect()
    try:
        await migrate(conn, "native")
        edges = [0.0, -5.0, 0.0625 - 1e-12, 0.0625, 0.0625 + 1e-12, 1.0, 2.0**26 - 1e-6, 2.0**26, 1e300]
        edges += [2 ** (k / 8) for k in range(-40, 220, 3)] + [2 ** (k / 8) * (1 - 1e-15) for k in range(-32, 208, 7)]
        special = ["'NaN'", "'Infinity'", "'-Infinity'", "NULL"]
        values = ", ".join([f"({v!r}::float8)" for v in edges] + [f"({v}::float8)" for v in special])
        rows = await conn.fetch(
            f"""
            SELECT d, latency_histogram(d) OVER w AS direct,
                   latency_histogram_add_slots(NULL, ARRAY[latency_histogram_slot(d)], ARRAY[1::bigint]) AS slotted
            FROM (VALUES {values}) v(d)
            WINDOW w AS (PARTITION BY d::text)
            """
        )
        assert len(rows) == len(edges) + len(special)
        for row in rows:
            assert row["slotted"] == row["direct"], f"duration {row['d']}"
        # Several counts, a repeated bucket and a NULL slot, added to an existing histogram.
        added = await conn.fetchval(
            "SELECT latency_histogram_add_slots(latency_histogram(d), ARRAY[3, 3, NULL, 242], "
            "ARRAY[2, 5, 7, 1]::bigint[]) FROM (VALUES (0.02::float8), (1e9::float8)) v(d)"
        )
        assert added[0] == 1 and added[2] == 7 and added[241] == 2 and sum(added) == 10
    finally:
        await conn.close()


async def test_read_api_histogram_functions_equal_the_reference_merge_and_quantile(database):
    """Migration 013's range-reading merge and multi-quantile (what /usage computes with) give exactly what
    migration 005's full-histogram merge and latency_quantile give, clamped into the group's [min, max]:
    on rollup-like rows (counts inside [min, max], some spans without a duration), on rows whose counts
    lie outside their [min, max] (the functions must notice and read every bucket), and on rows without
    a min or max."""
    rng = random.Random(13)
    specials = [float("nan"), float("inf"), -1.0, 0.0, 1e-9, 2.0**26, 1e12]
    rows = []  # (group, durations for the histogram, min, max, request_count)
    for i in range(400):
        kind = rng.random()
        scale = rng.choice([0.5, 20.0, 800.0, 30_000.0])
        durations = [rng.lognormvariate(0, 1.5) * scale for _ in range(rng.randint(1, 40))]
        if rng.random() < 0.1:
            durations.append(rng.choice(specials))
        present = [d for d in durations if d == d]  # NaN sorts above everything in PostgreSQL, as max() does
        low = min(present, default=float("nan"))
        high = float("nan") if len(present) < len(durations) else max(present, default=float("nan"))
        nulls = rng.randint(1, 3) if rng.random() < 0.15 else 0  # spans without a duration: counted, not bucketed
        if kind < 0.1:  # counts outside the row's own range
            low, high = low * 1.5 + 1.0, high
        elif kind < 0.15:
            low = None
        rows.append((i % 37, durations, low, high, len(durations) + nulls))
    for k in range(12):  # one span per group: every quantile is clamped to its exact duration
        duration = rng.lognormvariate(0, 2) * 100
        rows.append((100 + k, [duration], duration, duration, 1))
    conn = await database.connect()
    try:
        await migrate(conn, "native")
        await conn.execute(
            "CREATE TEMP TABLE h (grp int, histogram bigint[], min_ms float8, max_ms float8, request_count bigint)"
        )
        await conn.executemany(
            "INSERT INTO h SELECT $1, (SELECT latency_histogram(d) FROM unnest($2::float8[]) d), $3, $4, $5",
            rows,
        )
        found = await conn.fetch(
            """
            SELECT grp, merged, reference,
                   latency_quantiles(merged, lo, hi, total, '{0.5,0.95,0.99}') AS quantiles,
                   ARRAY(SELECT least(greatest(latency_quantile(reference, q), lo), hi)
                         FROM unnest('{0.5,0.95,0.99}'::float8[]) q) AS expected
            FROM (
                SELECT grp, latency_histogram_merge_within(histogram, min_ms, max_ms, request_count) AS merged,
                       latency_histogram_merge(histogram) AS reference,
                       min(min_ms) AS lo, max(max_ms) AS hi, sum(request_count)::bigint AS total
                FROM h GROUP BY grp
            ) g ORDER BY grp
            """
        )
        assert len(found) == 37 + 12
        for row in found:
            assert row["merged"] == row["reference"], f"group {row['grp']}"
            assert row["quantiles"] == row["expected"], f"group {row['grp']}"
    finally:
        await conn.close()

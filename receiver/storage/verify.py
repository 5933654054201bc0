"""`db verify`: is the schema complete and healthy? The seeds' verify_migrations.sql, as checks.

Each check is one line, PASS or FAIL, with what was found and, on FAIL, what to do. It checks what the
receiver and the dashboards rely on: migrations applied and unedited, tables, the rollup views and their
storage, the histogram functions, indexes present and valid (pg_index.indisvalid / indisready, which a
failed CREATE INDEX CONCURRENTLY or REINDEX leaves false), foreign keys, and the data lifecycle of the
flavor: TimescaleDB's hypertables, continuous aggregates and policies (and that no job is failing), or the
native flavor's maintenance prerequisites (DEFAULT and daily partitions for today and the days ahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from receiver.storage.migrate import applied_flavor, load_migrations
from receiver.storage.partitions import PARTITIONED_TABLES, chunk_intervals, list_partitions, midnight
from receiver.storage.rollups import ROLLUPS

TABLES = (
    "llm_traces",
    "llm_metrics",
    "llm_logs",
    "model_pricing",
    "dead_letters",
    "users",
    "projects",
    "api_keys",
    "schema_migrations",
)
FUNCTIONS = (
    "latency_histogram",
    "latency_histogram_merge",
    "latency_histogram_add",
    "latency_quantile",
    "latency_histogram_merge_within",
    "latency_histogram_add_within",
    "latency_quantiles",
    "latency_histogram_slot",  # 017: the rollup passes build histograms with these two
    "latency_histogram_add_slots",
)
INDEXES: dict[str, tuple[str, ...]] = {
    "llm_traces": (
        "llm_traces_ts_brin",
        "llm_traces_errors_ts_idx",
        "llm_traces_session_ts_idx",
        "llm_traces_user_ts_idx",
        "llm_traces_trace_id_idx",
    ),
    "llm_logs": ("llm_logs_trace_id_idx",),
    "users": ("users_email_key",),
    "projects": ("projects_owner_id_idx", "projects_slug_key"),
    "api_keys": ("api_keys_key_hash_key", "api_keys_project_id_idx", "api_keys_user_id_idx"),
}
NATIVE_INDEXES: dict[str, tuple[str, ...]] = {
    "llm_traces": ("llm_traces_ingested_at_brin",),
    **{r.store: (f"{r.store}_bucket_idx", f"{r.store}_project_bucket_idx") for r in ROLLUPS},
}
NATIVE_INDEXES["cost_analysis_hourly_store"] += ("cost_analysis_hourly_store_user_bucket_idx",)  # 013
NATIVE_INDEXES["llm_metrics"] = ("llm_metrics_name_ts_idx",)  # 013
# TimescaleDB flavor (015): the rollup stores are hypertables (create_hypertable made their bucket index).
TIMESCALE_INDEXES: dict[str, tuple[str, ...]] = {
    "llm_traces": ("llm_traces_ingested_at_brin",),
    **{r.store: (f"{r.store}_bucket_idx", f"{r.store}_project_bucket_idx") for r in ROLLUPS},
}
TIMESCALE_INDEXES["cost_analysis_hourly_store"] += ("cost_analysis_hourly_store_user_bucket_idx",)
ROLLUP_CHUNKS = {  # TimescaleDB flavor: the rollup stores' chunk lengths (migration 015)
    "llm_metrics_1min_store": "1 day",
    "llm_metrics_1hour_store": "30 days",
    "llm_metrics_1day_store": "365 days",
    "cost_analysis_hourly_store": "7 days",
    "usage_environment_hourly_store": "30 days",  # 016
}
FOREIGN_KEYS = (
    ("api_keys", "project_id", "projects"),
    ("api_keys", "user_id", "users"),
    ("projects", "owner_id", "users"),
)
SEGMENT_BY = {
    "llm_traces": "provider, model",
    "llm_metrics": "provider, model, metric_name",
    "llm_logs": "service_name",
}
RETENTION = {
    "llm_traces": "90 days",
    "llm_metrics": "37 days",
    "llm_logs": "37 days",
    "llm_metrics_1min_store": "37 days",
    "llm_metrics_1hour_store": "210 days",
    "llm_metrics_1day_store": "1095 days",
    "cost_analysis_hourly_store": "210 days",
    "usage_environment_hourly_store": "210 days",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


class Verifier:
    def __init__(self, conn: asyncpg.Connection, partition_days_ahead: int, partition_hours: int = 6) -> None:
        self.conn = conn
        self.days_ahead = partition_days_ahead
        self.partition_hours = partition_hours
        self.checks: list[Check] = []

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    async def run(self) -> list[Check]:
        flavor = await self.migrations()
        if flavor is None:
            return self.checks
        await self.tables()
        await self.functions_and_views(flavor)
        await self.indexes(flavor)
        await self.foreign_keys()
        if flavor == "timescale":
            await self.timescale()
        else:
            await self.native()
        return self.checks

    async def migrations(self) -> str | None:
        flavor = await applied_flavor(self.conn)
        if flavor is None:
            self.add("migrations", False, "schema_migrations does not exist: run `llm-observatory-receiver migrate`")
            return None
        recorded = {
            r["version"]: r["checksum"]
            for r in await self.conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        problems = []
        for m in load_migrations():
            label = f"{m.version:03d}_{m.name}"
            if m.version not in recorded:
                problems.append(f"{label} not applied (run `migrate`)")
            elif recorded[m.version] != m.checksum(flavor):
                problems.append(
                    f"{label} differs from the applied version (restore the file; changes go in new migrations)"
                )
        self.add(
            "migrations",
            not problems,
            "; ".join(problems) if problems else f"{len(recorded)} applied, checksums match ({flavor} flavor)",
        )
        return flavor

    async def tables(self) -> None:
        rows = await self.conn.fetch(
            "SELECT relname FROM pg_class WHERE relname = ANY($1::text[]) AND relkind IN ('r', 'p') "
            "AND relnamespace = 'public'::regnamespace",
            list(TABLES),
        )
        missing = sorted(set(TABLES) - {r["relname"] for r in rows})
        self.add("tables", not missing, f"missing: {', '.join(missing)}" if missing else f"{len(TABLES)} present")
        no_pk = await self.conn.fetch(
            "SELECT t FROM unnest($1::text[]) t WHERE to_regclass(t) IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(t) AND contype = 'p')",
            list(TABLES),
        )
        self.add(
            "primary keys",
            not no_pk,
            f"missing on: {', '.join(r['t'] for r in no_pk)}" if no_pk else "every table has its primary key",
        )

    async def functions_and_views(self, flavor: str) -> None:
        rows = await self.conn.fetch(
            "SELECT DISTINCT proname FROM pg_proc WHERE proname = ANY($1::text[])", list(FUNCTIONS)
        )
        missing = sorted(set(FUNCTIONS) - {r["proname"] for r in rows})
        self.add(
            "histogram functions", not missing, f"missing: {', '.join(missing)}" if missing else ", ".join(FUNCTIONS)
        )
        for rollup in ROLLUPS:
            kind = "hypertable" if flavor == "timescale" else "table"
            store = await self.conn.fetchval("SELECT to_regclass($1) IS NOT NULL", rollup.store)
            try:
                await self.conn.fetch(f"SELECT * FROM {rollup.view} LIMIT 0")
                view_ok, detail = True, f"view over {kind} {rollup.store}"
            except asyncpg.PostgresError as exc:
                view_ok, detail = False, f"not queryable ({exc}); re-run `migrate` on a fresh database"
            if not store:
                view_ok, detail = False, f"{kind} {rollup.store} missing"
            self.add(f"rollup {rollup.view}", view_ok, detail)

    async def indexes(self, flavor: str) -> None:
        expected = dict(INDEXES)
        if flavor == "native":
            for table, names in NATIVE_INDEXES.items():
                expected[table] = expected.get(table, ()) + names
        if flavor == "timescale":
            for table, names in TIMESCALE_INDEXES.items():
                expected[table] = expected.get(table, ()) + names
        relation = {table: table for table in expected}
        for table, names in expected.items():
            rows = await self.conn.fetch(
                "SELECT c.relname, i.indisvalid AND i.indisready AS healthy FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass($1)",
                relation[table],
            )
            found = {r["relname"]: r["healthy"] for r in rows}
            missing = [n for n in names if n not in found]
            invalid = [n for n in names if n in found and not found[n]]
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing)} (recreate it as in migrations/)")
            if invalid:
                problems.append(f"invalid {', '.join(invalid)} (REINDEX INDEX it)")
            detail = "; ".join(problems) if problems else f"{', '.join(names)} valid"
            self.add(f"indexes on {table}", not problems, detail)
        broken = await self.conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT (i.indisvalid AND i.indisready) AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY 1 LIMIT 20"
        )
        self.add(
            "index health",
            not broken,
            f"invalid: {', '.join(r['name'] for r in broken)} (REINDEX them)"
            if broken
            else "no invalid index in the database",
        )

    async def foreign_keys(self) -> None:
        rows = await self.conn.fetch(
            """
            SELECT c.conrelid::regclass::text AS tbl, a.attname AS col, c.confrelid::regclass::text AS ref,
                   c.convalidated
            FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f'
            """
        )
        found = {(r["tbl"], r["col"], r["ref"]): r["convalidated"] for r in rows}
        for table, column, ref in FOREIGN_KEYS:
            key = (table, column, ref)
            ok = found.get(key) is True
            detail = (
                "present, validated"
                if ok
                else (
                    "not validated (ALTER TABLE ... VALIDATE CONSTRAINT)" if key in found else "missing (run `migrate`)"
                )
            )
            self.add(f"foreign key {table}.{column} -> {ref}.id", ok, detail)

    async def native(self) -> None:
        today = midnight(await self.conn.fetchval("SELECT now()"))
        horizon = today + timedelta(days=self.days_ahead + 1)
        for table in PARTITIONED_TABLES:
            kind = await self.conn.fetchval("SELECT relkind FROM pg_class WHERE oid = to_regclass($1)", table)
            if kind != b"p":
                self.add(f"partitions of {table}", False, "not a partitioned table (native flavor expects one)")
                continue
            state = await list_partitions(self.conn, table)
            problems = []
            if state.default is None:
                problems.append("no DEFAULT partition (rows of days without a partition would be refused)")
            missing = state.gaps(today, horizon)
            if missing:
                shown = ", ".join(f"{lo:%Y-%m-%d %H:%M}..{hi:%Y-%m-%d %H:%M}" for lo, hi in missing[:3])
                problems.append(
                    f"no partition for {shown}{' …' if len(missing) > 3 else ''} UTC (the maintenance task creates "
                    "them: start the receiver or run `llm-observatory-receiver db maintain`)"
                )
            default_rows = 0
            if state.default is not None:
                default_rows = await self.conn.fetchval(
                    f"SELECT count(*) FROM (SELECT 1 FROM {state.default} LIMIT 1000001) x"
                )
            detail = (
                "; ".join(problems)
                if problems
                else f"DEFAULT + partitions covering {today:%Y-%m-%d}..{horizon - timedelta(days=1):%Y-%m-%d} present "
                f"({len(state.ranges)} partitions in all; {default_rows} rows in DEFAULT awaiting their partition)"
            )
            self.add(f"partitions of {table}", not problems, detail)
        row = await self.conn.fetchrow(
            "SELECT watermark, CASE WHEN isfinite(watermark) THEN extract(epoch FROM now() - watermark)::int END "
            "AS lag FROM rollup_watermarks WHERE source = 'llm_traces'"
        )
        if row is None:
            self.add(
                "rollup maintenance state", False, "rollup_watermarks has no llm_traces row (re-run migration 005)"
            )
        else:
            lag = "never run yet" if row["lag"] is None else f"rollups include spans ingested until {row['lag']} s ago"
            self.add("rollup maintenance state", True, lag)

    async def timescale(self) -> None:
        version = await self.conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        self.add("timescaledb extension", version is not None, f"version {version}" if version else "not installed")
        if version is None:
            return
        dims = {
            r["hypertable_name"]: r["time_interval"]
            for r in await self.conn.fetch(
                "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
                "WHERE dimension_number = 1"
            )
        }
        for table, interval in chunk_intervals(self.partition_hours).items():
            found = dims.get(table)
            self.add(
                f"hypertable {table}",
                found == interval,
                f"chunks of {found}"
                if found == interval
                else (
                    f"chunk interval {found}, expected {interval} (maintenance.partition_hours = "
                    f"{self.partition_hours}; the receiver's maintenance pass sets it for new chunks)"
                    if found
                    else "not a hypertable"
                ),
            )
        jobs = await self.conn.fetch(
            "SELECT j.job_id, j.proc_name, coalesce(j.hypertable_name, '') AS target, "
            "j.schedule_interval::text AS every, j.config, j.scheduled, s.last_run_status "
            "FROM timescaledb_information.jobs j LEFT JOIN timescaledb_information.job_stats s USING (job_id)"
        )
        for store, interval in ROLLUP_CHUNKS.items():
            found = await self.conn.fetchval(
                "SELECT time_interval::text FROM timescaledb_information.dimensions "
                "WHERE hypertable_name = $1 AND dimension_number = 1",
                store,
            )
            self.add(
                f"rollup store {store}",
                found == interval,
                f"hypertable, chunks of {found}, kept by the maintenance task"
                if found
                else "not a hypertable: run `migrate` (migration 015)",
            )
        settings = await self.conn.fetch(
            "SELECT hypertable_name, string_agg(attname, ', ' ORDER BY segmentby_column_index) "
            "FILTER (WHERE segmentby_column_index IS NOT NULL) AS segmentby "
            "FROM timescaledb_information.compression_settings GROUP BY 1"
        )
        segmentby = {r["hypertable_name"]: r["segmentby"] for r in settings}
        compression_jobs = {j["target"] for j in jobs if j["proc_name"] == "policy_compression"}
        for table, expected in SEGMENT_BY.items():
            ok = segmentby.get(table) == expected and table in compression_jobs
            detail = f"segment by {segmentby.get(table)}, " + (
                "policy present" if table in compression_jobs else "no compression policy"
            )
            self.add(f"compression {table}", ok, detail)
        retention = {j["target"]: j for j in jobs if j["proc_name"] == "policy_retention"}
        for name, drop_after in RETENTION.items():
            job = retention.get(name)
            found = None
            if job is not None:
                found = await self.conn.fetchval(
                    "SELECT ($1::jsonb ->> 'drop_after')::interval = $2::text::interval", job["config"], drop_after
                )
            self.add(
                f"retention {name}",
                bool(found),
                f"drop after {drop_after}"
                if found
                else ("missing (add_retention_policy)" if job is None else f"drop_after is {job['config']}"),
            )
        failing = [f"{j['job_id']} {j['proc_name']} on {j['target']}" for j in jobs if j["last_run_status"] == "Failed"]
        workers = await self.conn.fetchval("SELECT current_setting('timescaledb.max_background_workers', true)")
        problems = []
        if failing:
            problems.append(f"last run failed: {', '.join(failing)} (see timescaledb_information.job_errors)")
        if workers is not None and int(workers) == 0:
            problems.append("timescaledb.max_background_workers = 0: policies never run")
        self.add(
            "timescaledb jobs", not problems, "; ".join(problems) if problems else f"{len(jobs)} jobs, none failing"
        )


async def verify(conn: asyncpg.Connection, partition_days_ahead: int = 3, partition_hours: int = 6) -> list[Check]:
    return await Verifier(conn, partition_days_ahead, partition_hours).run()

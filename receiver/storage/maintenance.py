"""The maintenance task: a receiver component (start/shutdown) that keeps the schema's data lifecycle.

Native flavor, every `interval_s`: (1) daily partitions of llm_traces / llm_metrics / llm_logs — rows
that landed in DEFAULT moved into their day's new partition, today and the days ahead created, expired
days dropped (receiver.storage.partitions); (2) the four rollups brought up to date with the spans
ingested since the previous pass (receiver.storage.rollups); (3) expired rollup rows deleted.
TimescaleDB flavor: its background jobs do all of that; a pass only reads their status, so a failing
job shows in /health and /metrics like a failing native pass would.

One pass at a time across all receivers sharing the database (a session advisory lock; a receiver that
does not get it skips the pass). Each step is bounded (days moved, rollup windows, rows expired per
pass) and a failed step is logged, counted, and retried next pass without stopping the others.
`run_once()` is what `llm-observatory-receiver db maintain` and the tests call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from receiver.storage import partitions, rollups
from receiver.storage.errors import describe
from receiver.telemetry.logging import get_logger
from receiver.telemetry.metrics import Metrics

Connector = Callable[[], Awaitable[asyncpg.Connection]]
_LOCK_KEY = 0x4C4C4D50  # "LLMP": one maintenance pass at a time per database


@dataclass(frozen=True)
class MaintenanceSettings:
    """What a pass does; built from the [maintenance] configuration section."""

    interval_s: float = 30.0
    partition_days_ahead: int = 3
    partition_hours: int = 6  # native partitions / TimescaleDB chunks of the signal tables (README: sizing)
    retention_days: dict[str, int] = field(
        default_factory=lambda: {
            "llm_traces": 90,
            "llm_metrics": 37,
            "llm_logs": 37,
            "llm_metrics_1min": 37,
            "llm_metrics_1hour": 210,
            "llm_metrics_1day": 1095,
            "cost_analysis_hourly": 210,
            "usage_environment_hourly": 210,
        }
    )
    max_default_days_per_pass: int = 7
    lock_timeout_ms: int = 2000
    rollup_delay_s: float = 2.0


@dataclass
class PassReport:
    flavor: str
    started_at: datetime
    duration_s: float = 0.0
    skipped: str | None = None
    partitions: partitions.PartitionReport | None = None
    rollups: rollups.RollupReport | None = None
    timescale_jobs: list[dict[str, Any]] | None = None
    errors: dict[str, str] = field(default_factory=dict)  # step -> what went wrong

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary_lines(self) -> list[str]:
        """Human-readable lines for `db maintain`."""
        if self.skipped:
            return [f"skipped: {self.skipped}"]
        lines: list[str] = []
        p = self.partitions
        if p is not None:
            lines += [f"created partition {name}" for name in p.created]
            lines += [f"moved {n} rows from DEFAULT into {name}" for name, n in p.rows_moved.items()]
            lines += [
                f"deleted {n} expired rows from {table}'s DEFAULT partition" for table, n in p.rows_expired.items()
            ]
            lines += [f"dropped partition {name}" for name in p.dropped]
            lines += [f"deferred: {what}" for what in p.deferred]
        r = self.rollups
        if r is not None:
            written = ", ".join(f"{view} {n}" for view, n in r.rows_written.items()) or "none"
            lag = f"lag {r.lag_s:.1f} s" if r.lag_s is not None else "nothing ingested yet"
            more = "" if r.caught_up else " (more to do next pass)"
            lines.append(
                f"rollups: {r.spans} spans in {r.windows} windows ({r.duration_s:.2f} s), rows written: {written}; "
                f"{lag}{more}"
            )
            lines += [f"expired {n} rows from {view}" for view, n in r.rows_expired.items()]
        for job in self.timescale_jobs or []:
            status = job["last_run_status"] or "not run yet"
            lines.append(f"timescaledb job {job['job_id']} {job['application_name']}: last run {status}")
        lines += [f"FAILED {step}: {error}" for step, error in self.errors.items()]
        lines.append(f"pass {'ok' if self.ok else 'failed'} in {self.duration_s:.2f} s ({self.flavor} flavor)")
        return lines


_TIMESCALE_JOBS = """
SELECT j.job_id, j.application_name, coalesce(j.hypertable_name, '') AS target, j.scheduled,
       s.last_run_status, s.last_successful_finish, s.total_failures
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s USING (job_id)
WHERE j.job_id >= 1000
ORDER BY j.job_id
"""

# The last recorded error of each failing job, so the log line says why without a trip to psql.
_TIMESCALE_JOB_LAST_ERRORS = """
SELECT DISTINCT ON (job_id) job_id, err_message
FROM timescaledb_information.job_errors
WHERE job_id = ANY($1::int[])
ORDER BY job_id, finish_time DESC
"""


class Maintenance:
    """Runs maintenance passes every `settings.interval_s` from `start()` until `shutdown()`."""

    def __init__(self, connect: Connector, flavor: str, settings: MaintenanceSettings, metrics: Metrics) -> None:
        self._connect = connect
        self.flavor = flavor
        self.settings = settings
        self.metrics = metrics
        self.log = get_logger("maintenance")
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._running = asyncio.Lock()
        self.last: PassReport | None = None
        self.last_success_at: datetime | None = None
        self.consecutive_failures = 0
        self.partition_state: dict[str, dict[str, Any]] = {}

    # -- component ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Run the first pass now (so today's and the coming days' partitions exist before rows
        arrive), then every interval in the background."""
        self._stop.clear()
        await self.run_once(partitions_only=True)
        self._task = asyncio.create_task(self._loop(), name="maintenance")
        self.log.info("maintenance started", flavor=self.flavor, interval_s=self.settings.interval_s)

    async def shutdown(self, grace_s: float = 10.0) -> None:
        """Let a running pass finish (its transactions are short), then stop; cancel after `grace_s`."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self._close()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.interval_s)
            if not self._stop.is_set():
                await self.run_once()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
        return self._conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()

    # -- one pass ----------------------------------------------------------------------------------

    async def run_once(self, rebuild_rollups: bool = False, partitions_only: bool = False) -> PassReport:
        """One maintenance pass. Never raises: failures are in the report, the log and the metrics."""
        async with self._running:
            report = PassReport(self.flavor, datetime.now(UTC))
            started = time.monotonic()
            try:
                conn = await self._connection()
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
                    report.skipped = "another receiver is running a maintenance pass on this database"
                else:
                    try:
                        if self.flavor == "native":
                            await self._native_pass(conn, report, rebuild_rollups, partitions_only)
                        else:
                            await self._timescale_pass(conn, report, rebuild_rollups, partitions_only)
                    finally:
                        if not conn.is_closed():
                            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                report.errors["connection"] = describe(exc)
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
            report.duration_s = time.monotonic() - started
            self._record(report)
            return report

    async def _step(self, report: PassReport, name: str, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except asyncpg.InsufficientPrivilegeError as exc:
            report.errors[name] = (
                f"{describe(exc)}: this step needs the tables' owner; set maintenance.database_url to the owner's "
                "URL (README, 'Least privilege in the database')"
            )
        except (asyncpg.PostgresError, RuntimeError) as exc:
            report.errors[name] = describe(exc)

    async def _native_pass(
        self, conn: asyncpg.Connection, report: PassReport, rebuild_rollups: bool, partitions_only: bool = False
    ) -> None:
        s = self.settings
        now: datetime = await conn.fetchval("SELECT now()")
        today = partitions.midnight(now)
        report.partitions = partitions.PartitionReport()
        for table in partitions.PARTITIONED_TABLES:

            async def one_table(table: str = table) -> None:
                state = await partitions.maintain_table(
                    conn,
                    table,
                    now=now,
                    days_ahead=s.partition_days_ahead,
                    retention_days=s.retention_days[table],
                    max_default_days=s.max_default_days_per_pass,
                    lock_timeout_ms=s.lock_timeout_ms,
                    report=report.partitions,  # type: ignore[arg-type]
                    partition_hours=s.partition_hours,
                )
                covered = state.covered_until(today)
                starts = [lo for lo, _ in state.ranges.values()]
                self.partition_state[table] = {
                    "partitions": len(state.ranges),
                    "partition_hours": s.partition_hours,
                    "oldest": min(starts).isoformat() if starts else None,
                    "newest": max(starts).isoformat() if starts else None,
                    # whole days covered after today (today itself is day 0), -1 if today is not
                    "days_ahead": (covered - today) // timedelta(days=1) - 1,
                }

            await self._step(report, f"partitions:{table}", one_table)

        if partitions_only:  # the start-up pass: partitions before the first row; the rest can wait
            return
        await self._rollups(conn, report, rebuild_rollups, expire=True)

    async def _rollups(self, conn: asyncpg.Connection, report: PassReport, rebuild: bool, expire: bool) -> None:
        """Both flavors: add the spans ingested since the last pass to the rollups; `expire` deletes rows
        past their retention (the native flavor; TimescaleDB's retention policies drop chunks instead)."""
        s = self.settings
        if rebuild:
            await self._step(report, "rollups:rebuild", lambda: rollups.rebuild(conn))

        async def refresh() -> None:
            report.rollups = await rollups.refresh(conn, s.rollup_delay_s, hypertable=self.flavor == "timescale")

        await self._step(report, "rollups:refresh", refresh)
        if not expire:
            return

        async def expire_rows() -> None:
            if report.rollups is None:
                report.rollups = rollups.RollupReport()
            await rollups.expire(conn, s.retention_days, report.rollups)

        await self._step(report, "rollups:retention", expire_rows)

    async def _timescale_pass(
        self, conn: asyncpg.Connection, report: PassReport, rebuild_rollups: bool, partitions_only: bool = False
    ) -> None:
        async def chunk_lengths() -> None:
            """New chunks take the configured length (maintenance.partition_hours); existing ones keep theirs."""
            wanted = partitions.chunk_intervals(self.settings.partition_hours)
            rows = await conn.fetch(
                "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
                "WHERE dimension_number = 1 AND hypertable_name = ANY($1::text[])",
                list(wanted),
            )
            for row in rows:
                table, length = row["hypertable_name"], wanted[row["hypertable_name"]]
                if row["time_interval"] != length:
                    await conn.execute("SELECT set_chunk_time_interval($1::regclass, $2::interval)", table, length)
                    self.log.info("chunk interval changed", table=table, chunk_hours=length / timedelta(hours=1))

        await self._step(report, "timescaledb:chunk_interval", chunk_lengths)

        async def jobs() -> None:
            report.timescale_jobs = [dict(r) for r in await conn.fetch(_TIMESCALE_JOBS)]
            failing = [j for j in report.timescale_jobs if j["last_run_status"] == "Failed"]
            if failing:
                ids = [j["job_id"] for j in failing]
                last_errors = {r["job_id"]: r["err_message"] for r in await conn.fetch(_TIMESCALE_JOB_LAST_ERRORS, ids)}
                names = ", ".join(
                    f"{j['job_id']} {j['application_name']}: {last_errors.get(j['job_id'], '?')}" for j in failing
                )
                raise RuntimeError(f"TimescaleDB jobs failing: {names} (see timescaledb_information.job_errors)")

        await self._step(report, "timescaledb:jobs", jobs)

        if not partitions_only:
            await self._rollups(conn, report, rebuild_rollups, expire=False)  # stores: retention policies (015)

    # -- visibility --------------------------------------------------------------------------------

    def _record(self, report: PassReport) -> None:
        m = self.metrics
        outcome = "skipped" if report.skipped else ("ok" if report.ok else "failed")
        m.maintenance_passes.labels(outcome).inc()
        m.maintenance_pass_duration.observe(report.duration_s)
        self.last = report
        if report.skipped:
            self.log.debug("maintenance pass skipped", reason=report.skipped)
            return
        for step, error in report.errors.items():
            m.maintenance_failures.labels(step).inc()
            self.log.error("maintenance step failed", step=step, error=error)
        if report.ok:
            self.consecutive_failures = 0
            self.last_success_at = report.started_at
            m.maintenance_last_success.set(report.started_at.timestamp())
        else:
            self.consecutive_failures += 1
        m.maintenance_failing_passes.set(self.consecutive_failures)
        p = report.partitions
        if p is not None:
            for name in p.created:
                m.partitions_created.labels(name.rsplit("_p", 1)[0]).inc()
                self.log.info("partition created", partition=name, rows_moved_from_default=p.rows_moved.get(name, 0))
            for name, rows in p.rows_moved.items():
                m.partition_rows_moved.labels(name.rsplit("_p", 1)[0]).inc(rows)
            for table, rows in p.rows_expired.items():
                m.partition_rows_expired.labels(table).inc(rows)
                self.log.info("expired rows deleted from DEFAULT partition", table=table, rows=rows)
            for name in p.dropped:
                m.partitions_dropped.labels(name.rsplit("_p", 1)[0]).inc()
                self.log.info("partition dropped (retention)", partition=name)
            for what in p.deferred:
                self.log.warning("partition work deferred to the next pass", detail=what)
        for table, state in self.partition_state.items():
            m.partitions_days_ahead.labels(table).set(state["days_ahead"])
        r = report.rollups
        if r is not None:
            m.rollup_refresh_duration.observe(r.duration_s)
            m.rollup_spans.inc(r.spans)
            for view, rows in r.rows_written.items():
                m.rollup_rows_written.labels(view).inc(rows)
            for view, rows in r.rows_expired.items():
                m.rollup_rows_expired.labels(view).inc(rows)
                self.log.info("expired rollup rows deleted", rollup=view, rows=rows)
            if r.lag_s is not None:
                m.rollup_lag.set(r.lag_s)
            if r.spans:
                self.log.info(
                    "rollups refreshed",
                    spans=r.spans,
                    windows=r.windows,
                    rows_written=r.rows_written,
                    duration_s=round(r.duration_s, 3),
                    lag_s=round(r.lag_s, 1) if r.lag_s is not None else None,
                    caught_up=r.caught_up,
                )
        if report.timescale_jobs is not None:
            m.timescale_jobs_failing.set(sum(1 for j in report.timescale_jobs if j["last_run_status"] == "Failed"))

    def health(self) -> dict[str, Any]:
        last = self.last
        out: dict[str, Any] = {
            "flavor": self.flavor,
            "interval_s": self.settings.interval_s,
            "last_pass_at": last.started_at.isoformat(timespec="seconds") if last else None,
            "last_success_at": self.last_success_at.isoformat(timespec="seconds") if self.last_success_at else None,
            "last_duration_s": round(last.duration_s, 3) if last else None,
            "consecutive_failures": self.consecutive_failures,
            "last_errors": last.errors if last and last.errors else None,
        }
        r = last.rollups if last else None
        out["rollups"] = {
            "watermark": r.watermark.isoformat() if r and r.watermark else None,
            "lag_s": round(r.lag_s, 1) if r and r.lag_s is not None else None,
            "caught_up": r.caught_up if r else None,
        }
        if self.flavor == "native":
            out["partitions"] = self.partition_state
        elif last and last.timescale_jobs is not None:
            out["timescaledb_jobs"] = [
                {
                    "job_id": j["job_id"],
                    "job": j["application_name"],
                    "target": j["target"],
                    "last_run_status": j["last_run_status"],
                    "total_failures": j["total_failures"],
                }
                for j in last.timescale_jobs
            ]
        return out

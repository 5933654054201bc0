"""The rollups: llm_metrics_1min / 1hour / 1day and cost_analysis_hourly, kept incrementally by the
maintenance task in both schema flavors. (The TimescaleDB flavor used continuous aggregates until
migration 015: they recompute a whole bucket from the raw spans whenever it changes, so the hourly
per-user one re-read the current hour every 5 minutes and its cost grew through the hour.)

Incremental by ingestion time, exactly once. Every rollup column is additive (counts, sums, min/max, the
latency histogram's counts), so a pass does not recompute buckets: it aggregates the spans *ingested*
since the previous pass — `ingested_at` in [watermark, horizon) — and adds them to the buckets their
`ts` falls in, however old (late and backfilled spans included). The watermark moves in the same
transaction as the additions, so a span is counted once even if a pass fails half-way.

The horizon is what makes "since the previous pass" exact. A span's ingested_at is the start of the
statement that wrote it, but it becomes visible only at commit; a pass must not move the watermark past
a timestamp that an uncommitted writer may still commit rows with. So the horizon is the earliest of:
now, the start of every open transaction in this database that has written (it holds an xid), and the
start of every running statement, minus a small delay (`rollup_delay_s`) for a statement that has taken
its timestamp but is not yet visible in pg_stat_activity. (PostgreSQL clears a backend's xact_start only
after its commit is visible to new snapshots, and the spans are read in a later transaction.) A
transaction left open after writing holds the rollups back until it ends: `lag_s` in /health shows it.
pg_stat_activity shows the transactions of other roles only to members of pg_read_all_stats: if other
roles write llm_traces, grant it to the receiver's role.

Bounded work: one transaction per window of at most WINDOW of ingestion time, at most MAX_WINDOWS per
pass; a receiver that was down catches up over several passes. (The first pass of a database that has
never been rolled up, e.g. just upgraded from migration 002, reads everything in one window.)

Which spans count: those with a provider or a model, dated at or after `rollup_watermarks.ts_floor`
(migration 015: older buckets came from the continuous aggregates). In the TimescaleDB flavor also only
spans dated at most LATE_LIMIT before they were ingested: older chunks are compressed (after 7 days,
migration 007), and finding the new rows of a compressed chunk means decompressing all of it on every
pass. Such very late spans are stored but not rolled up (the continuous aggregates had the same rule
at 30 days).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from receiver.storage.brin import is_hypertable, summarize_new_ranges
from receiver.telemetry.logging import get_logger

SOURCE = "llm_traces"
# latency_quantile()'s bound (migration 005): 8 log-spaced buckets per doubling, geometric midpoints.
PERCENTILE_RELATIVE_ERROR = 2 ** (1 / 16) - 1  # 4.43 %, for durations in [0.0625 ms, 2^26 ms)
WINDOW = timedelta(minutes=10)
LATE_LIMIT = timedelta(days=7)  # TimescaleDB flavor: the compression policy's compress_after (007)
MAX_WINDOWS = 36
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"  # time_bucket's alignment: UTC minutes, hours, days
RETENTION_BATCH = 100_000  # rows deleted per store per pass at most

MEASURES = (
    "request_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "total_cost",
    "duration_sum_ms",
    "duration_min_ms",
    "duration_max_ms",
    "latency_histogram",
)
COST_MEASURES = (*MEASURES[:5], "input_cost", "output_cost", *MEASURES[5:])


@dataclass(frozen=True)
class Rollup:
    view: str
    store: str
    bucket: str  # expression over the delta's minute column
    dimensions: tuple[str, ...]
    measures: tuple[str, ...]


_DIMS = ("project_id", "provider", "model", "service_name")  # project_id: migration 010
ROLLUPS = (
    Rollup("llm_metrics_1min", "llm_metrics_1min_store", "minute", _DIMS, MEASURES),
    Rollup("llm_metrics_1hour", "llm_metrics_1hour_store", f"date_bin('1 hour', minute, {ORIGIN})", _DIMS, MEASURES),
    Rollup("llm_metrics_1day", "llm_metrics_1day_store", f"date_bin('1 day', minute, {ORIGIN})", _DIMS, MEASURES),
    Rollup(
        "cost_analysis_hourly",
        "cost_analysis_hourly_store",
        f"date_bin('1 hour', minute, {ORIGIN})",
        (*_DIMS, "user_id", "environment"),
        COST_MEASURES,
    ),
    Rollup(  # migration 016: usage by environment without a row per user
        "usage_environment_hourly",
        "usage_environment_hourly_store",
        f"date_bin('1 hour', minute, {ORIGIN})",
        (*_DIMS, "environment"),
        COST_MEASURES,
    ),
)

_HORIZON = """
SELECT least(
    statement_timestamp(),
    (SELECT min(CASE WHEN backend_xid IS NOT NULL THEN xact_start ELSE query_start END)
       FROM pg_stat_activity
      WHERE datname = current_database()
        AND pid <> pg_backend_pid()
        AND backend_type = 'client backend'
        AND xact_start IS NOT NULL
        AND (backend_xid IS NOT NULL OR state = 'active'))
) - make_interval(secs => $1::double precision)
"""

# Sessions writing llm_traces right now (a lock on it, granted) whose activity pg_stat_activity hides from
# this role: another role's writers, seen only by members of pg_read_all_stats. The horizon cannot wait
# for transactions it cannot see, so a pass that finds one stops instead of counting wrong.
_HIDDEN_WRITERS = """
SELECT count(DISTINCT l.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'RowExclusiveLock'
  AND l.relation = 'llm_traces'::regclass
  AND a.datname = current_database() AND a.state IS NULL AND a.pid <> pg_backend_pid()
"""

_DELTA_TABLE = """
CREATE TEMP TABLE _rollup_delta (
    minute timestamptz, project_id uuid, provider text, model text, service_name text, user_id text, environment text,
    slot integer,
    request_count bigint, error_count bigint, input_tokens numeric, output_tokens numeric, total_tokens numeric,
    input_cost numeric, output_cost numeric, total_cost numeric,
    duration_sum_ms double precision, duration_min_ms double precision, duration_max_ms double precision
) ON COMMIT DROP
"""

# The finest grain every rollup can be derived from: minute x all dimensions of every rollup x latency
# histogram bucket (migration 017: the bucket is an inlined expression, so the histogram costs no function
# call per span; each rollup row then adds its buckets' counts in one call, see upsert_sql).
_DELTA = f"""
INSERT INTO _rollup_delta
SELECT date_bin('1 minute', ts, {ORIGIN}), project_id, provider, model, service_name, user_id, environment,
       latency_histogram_slot(duration_ms),
       count(*), count(*) FILTER (WHERE status_code = 'error'),
       coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(total_tokens), 0),
       coalesce(sum(input_cost), 0), coalesce(sum(output_cost), 0), coalesce(sum(total_cost), 0),
       sum(duration_ms), min(duration_ms), max(duration_ms)
FROM llm_traces
WHERE ingested_at >= $1
  AND ingested_at < $2
  AND ts >= $3
  AND (provider IS NOT NULL OR model IS NOT NULL)
  {{late}}
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""
# TimescaleDB: $3 also bounds ts by the window's start minus LATE_LIMIT, which excludes the compressed
# chunks from the scan; this keeps the rule per span, whatever the window.
_LATE = "AND ts >= ingested_at - $4::interval"


# The next window: from the watermark, WINDOW long, never past the horizon ($1). The row lock keeps two
# passes (two receivers) from rolling up the same window.
_NEXT_WINDOW = """
SELECT r.watermark AS window_start, w.window_end, w.window_end > r.watermark AS pending, r.ts_floor
FROM rollup_watermarks r,
     LATERAL (SELECT CASE WHEN isfinite(r.watermark) THEN least($1, r.watermark + $2::interval) ELSE $1 END
              AS window_end) w
WHERE r.source = $3
FOR UPDATE OF r
"""

_MERGE_IN_DELTA = {  # how the delta's finer rows combine into one rollup row
    "request_count": "sum(request_count)::bigint",
    "error_count": "sum(error_count)::bigint",
    "duration_min_ms": "min(duration_min_ms)",
    "duration_max_ms": "max(duration_max_ms)",
}
_MERGE_INTO_STORE = {  # how a rollup row absorbs the delta's row
    "duration_min_ms": "least(s.duration_min_ms, d.duration_min_ms)",
    "duration_max_ms": "greatest(s.duration_max_ms, d.duration_max_ms)",
    # Migration 017: the counts of the buckets the delta has for this row, added in one call.
    "latency_histogram": "latency_histogram_add_slots(s.latency_histogram, d.slots, d.slot_counts)",
}
# A rollup row's histogram, from the delta: (bucket, count) pairs, one per delta row (a bucket may repeat:
# the add sums them).
_HISTOGRAM_IN_DELTA = "array_agg(slot) AS slots, array_agg(request_count) AS slot_counts"
_NEW_HISTOGRAM = "latency_histogram_add_slots(NULL, slots, slot_counts)"


# What a NULL dimension is compared as (with an IS NULL test beside it, so no real value can match it).
_NULL_AS = {"project_id": "'00000000-0000-0000-0000-000000000000'::uuid"}


def _same_group(left: str, right: str, dimensions: tuple[str, ...]) -> str:
    """NULL-safe equality of the group keys, written so the planner can hash-join it."""
    parts = [f"{left}.bucket = {right}.bucket"]
    for dim in dimensions:
        null_as = _NULL_AS.get(dim, "''")
        parts.append(f"({left}.{dim} IS NULL) = ({right}.{dim} IS NULL)")
        parts.append(f"coalesce({left}.{dim}, {null_as}) = coalesce({right}.{dim}, {null_as})")
    return " AND ".join(parts)


def upsert_sql(rollup: Rollup) -> str:
    """Add the delta to `rollup`'s store: update the groups it has, insert the others."""
    dims = ", ".join(rollup.dimensions)
    sums = [m for m in rollup.measures if m != "latency_histogram"]
    aggregated = ", ".join([f"{_MERGE_IN_DELTA.get(m, f'sum({m})')} AS {m}" for m in sums] + [_HISTOGRAM_IN_DELTA])
    assignments = ", ".join(f"{m} = {_MERGE_INTO_STORE.get(m, f's.{m} + d.{m}')}" for m in rollup.measures)
    columns = ", ".join(("bucket", *rollup.dimensions, *rollup.measures))
    values = ", ".join(
        ("bucket", *rollup.dimensions, *(_NEW_HISTOGRAM if m == "latency_histogram" else m for m in rollup.measures))
    )
    return f"""
WITH d AS (
    SELECT {rollup.bucket} AS bucket, {dims}, {aggregated}
    FROM _rollup_delta GROUP BY 1, {dims}
), updated AS (
    UPDATE {rollup.store} s SET {assignments}
    FROM d WHERE {_same_group("s", "d", rollup.dimensions)}
    RETURNING d.bucket, {", ".join(f"d.{x}" for x in rollup.dimensions)}
)
INSERT INTO {rollup.store} ({columns})
SELECT {values} FROM d
WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE {_same_group("u", "d", rollup.dimensions)})
"""


_UPSERTS = {r.view: upsert_sql(r) for r in ROLLUPS}


@dataclass
class RollupReport:
    windows: int = 0
    spans: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)  # view -> store rows updated or inserted
    rows_expired: dict[str, int] = field(default_factory=dict)
    brin_ranges_summarized: int = 0  # before the pass (receiver.storage.brin)
    watermark: datetime | None = None
    lag_s: float | None = None
    duration_s: float = 0.0
    caught_up: bool = True


class HiddenWritersError(RuntimeError):
    """The rollups cannot see every writer's transaction (see _HIDDEN_WRITERS)."""


async def horizon(conn: asyncpg.Connection, delay_s: float) -> datetime:
    hidden = await conn.fetchval(_HIDDEN_WRITERS)
    if hidden:
        user = await conn.fetchval("SELECT current_user")
        raise HiddenWritersError(
            f"{hidden} session(s) of another role are writing llm_traces and pg_stat_activity hides their "
            f"transactions from role {user}, so the rollups cannot tell which of their spans are committed: "
            f"GRANT pg_read_all_stats TO {user} (or run the maintenance as the role the writers use)"
        )
    return await conn.fetchval(_HORIZON, delay_s)


# Settings of a pass's transaction, measured on a soak database (a minute of 161K spans, backend CPU):
# - JIT compiled ~75 functions for the delta's statement every pass: 1.8 s of emission for a 9 s
#   statement, and the statement did not get faster;
# - the upserts join the delta to a store on a dozen NULL-safe keys; the planner's estimate for that many
#   clauses is a single row, so it chose a merge join that sorted both sides (the delta's rows wide, the
#   sort spilling): 2.3 s for the per-user rollup, 1.35 s with a hash join. Nor a nested loop: with a
#   store chunk not analyzed yet (TimescaleDB, the second pass of a fresh database) the planner took it
#   for a few rows and scanned it once per delta row: 295 s for 16K rows. A hash join is right whatever
#   the sizes: every join of a pass is an equality on the group keys.
_PASS_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL enable_mergejoin = off", "SET LOCAL enable_nestloop = off")
# The delta groups every span of the window by minute x dimensions x histogram bucket: with the default
# 4 MB its sort spills to disk (2.07 s -> 1.21 s of CPU with 64 MB, same window). One maintenance session
# at a time uses it, within its transaction only. And the delta reads its spans through the BRIN index on
# ingested_at, never by a sequential scan: the planner's estimates for the two were within 5 % on a 4M-row
# TimescaleDB chunk (the BRIN's lossy ranges look expensive), it chose the scan, and each pass read the
# whole chunk (330 s for a minute of spans in a soak, growing with the chunk).
DELTA_WORK_MEM = "64MB"


def ts_lower_bound(window_start: datetime, ts_floor: datetime, late_limit: timedelta | None) -> datetime:
    """The earliest span time a window can count: the floor, and with a late limit, the window's start
    minus it (a constant the planner uses to skip old chunks; the per-span rule is in _LATE)."""
    if late_limit is None or window_start == datetime.min:  # asyncpg's -infinity: a naive datetime.min
        return ts_floor
    bound = window_start - late_limit
    return bound if ts_floor == datetime.min else max(ts_floor, bound)


async def _one_window(
    conn: asyncpg.Connection, until: datetime, report: RollupReport, late_limit: timedelta | None
) -> bool:
    """Roll up one window of ingestion time ending at most at `until`; False when there was nothing left."""
    async with conn.transaction():
        for setting in _PASS_SETTINGS:
            await conn.execute(setting)
        state = await conn.fetchrow(_NEXT_WINDOW, until, WINDOW, SOURCE)
        if state is None:
            raise RuntimeError(f"rollup_watermarks has no row for {SOURCE}: run `migrate` (migration 005)")
        if not state["pending"]:
            return False
        await conn.execute(_DELTA_TABLE)
        work_mem = await conn.fetchval("SHOW work_mem")
        await conn.execute(f"SET LOCAL work_mem = '{DELTA_WORK_MEM}'")
        await conn.execute("SET LOCAL enable_seqscan = off")  # see DELTA_WORK_MEM
        start, floor = state["window_start"], state["ts_floor"]
        if late_limit is None:
            await conn.execute(_DELTA.format(late=""), start, state["window_end"], floor)
        else:
            lower = ts_lower_bound(start, floor, late_limit)
            await conn.execute(_DELTA.format(late=_LATE), start, state["window_end"], lower, late_limit)
        await conn.execute(f"SET LOCAL work_mem = '{work_mem}'")  # the session's again, for the upserts
        await conn.execute("SET LOCAL enable_seqscan = on")
        spans = int(await conn.fetchval("SELECT coalesce(sum(request_count), 0) FROM _rollup_delta"))
        if spans:
            for view, sql in _UPSERTS.items():
                status = await conn.execute(sql)
                report.rows_written[view] = report.rows_written.get(view, 0) + int(status.rsplit(" ", 1)[1])
        await conn.execute(
            "UPDATE rollup_watermarks SET watermark = $1, rows_rolled = rows_rolled + $2, updated_at = now() "
            "WHERE source = $3",
            state["window_end"],
            spans,
            SOURCE,
        )
    report.windows += 1
    report.spans += spans
    return True


_told_not_owner = False


async def _summarize(conn: asyncpg.Connection, now: datetime, hypertable: bool) -> int:
    """The new BRIN ranges of llm_traces' recent partitions (see receiver.storage.brin); a role that does
    not own the table cannot, and the pass then reads what autovacuum has not summarized (said once)."""
    global _told_not_owner
    try:
        return await summarize_new_ranges(conn, "llm_traces", now, hypertable=hypertable)
    except asyncpg.InsufficientPrivilegeError:
        if not _told_not_owner:
            _told_not_owner = True
            get_logger("maintenance").warning(
                "BRIN ranges not summarized before the rollups: this role does not own llm_traces",
                detail="run the maintenance as the owner (maintenance.database_url) so each pass reads only "
                "the spans ingested since the last",
            )
        return 0


async def refresh(conn: asyncpg.Connection, delay_s: float, hypertable: bool | None = None) -> RollupReport:
    """Add every span ingested before the horizon (at most MAX_WINDOWS windows) to the rollups.

    `hypertable`: whether llm_traces is a TimescaleDB hypertable, when the caller knows its flavor (the
    maintenance task does); None asks the catalog."""
    report = RollupReport()
    started = time.monotonic()
    until = await horizon(conn, delay_s)
    if hypertable is None:
        hypertable = await is_hypertable(conn, SOURCE)
    report.brin_ranges_summarized = await _summarize(conn, until, hypertable)
    late_limit = LATE_LIMIT if hypertable else None
    while report.windows < MAX_WINDOWS:
        if not await _one_window(conn, until, report, late_limit):
            break
    else:
        report.caught_up = False
    row = await conn.fetchrow(
        "SELECT watermark, CASE WHEN isfinite(watermark) THEN extract(epoch FROM now() - watermark)::float8 END "
        "AS lag_s FROM rollup_watermarks WHERE source = $1",
        SOURCE,
    )
    report.watermark = row["watermark"] if row["lag_s"] is not None else None
    report.lag_s = row["lag_s"]
    report.duration_s = time.monotonic() - started
    return report


async def expire(conn: asyncpg.Connection, retention_days: dict[str, int], report: RollupReport) -> None:
    """Delete rollup rows older than their retention (at most RETENTION_BATCH per store per pass)."""
    for rollup in ROLLUPS:
        days = retention_days[rollup.view]
        status = await conn.execute(
            f"DELETE FROM {rollup.store} WHERE ctid = ANY (ARRAY("
            f"SELECT ctid FROM {rollup.store} WHERE bucket < now() - make_interval(days => $1) LIMIT $2))",
            days,
            RETENTION_BATCH,
        )
        deleted = int(status.rsplit(" ", 1)[1])
        if deleted:
            report.rows_expired[rollup.view] = deleted


async def rebuild(conn: asyncpg.Connection) -> None:
    """Empty the rollups and rewind the watermark: the next passes recompute them from llm_traces (for
    example after restoring llm_traces from a dump, whose rows keep their old ingested_at)."""
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(r.store for r in ROLLUPS)}")
        await conn.execute(
            "UPDATE rollup_watermarks SET watermark = '-infinity', ts_floor = '-infinity', rows_rolled = 0, "
            "updated_at = now() WHERE source = $1",
            SOURCE,
        )

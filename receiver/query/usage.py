"""GET /api/v1/usage: requests, errors, tokens, cost and latency percentiles per time bucket, grouped
by any of provider, model, service, user, environment, project — answered from the rollups, never by
scanning raw spans.

Each bucket width reads the coarsest rollup that has it (1m: llm_metrics_1min, 1h: llm_metrics_1hour,
1d: llm_metrics_1day); grouping or filtering by environment reads usage_environment_hourly (migration
016: a few rows per hour), by user cost_analysis_hourly (a row per user and hour), so both work for 1h
and 1d buckets. Counts, tokens and costs are
exact sums of the rollup rows (`numeric` cost, as a decimal string); p50/p95/p99 come from the exact
merge of their latency histograms, read as `latency_quantile` reads one — the nearest-rank quantile
within 4.43 % (README, "Rollups") — and clamped into the group's exact min..max (see `build`).
Freshness is the rollups': up to a maintenance interval.
Pure: builds SQL, shapes rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.convert.genai import as_key
from receiver.query.errors import BadParameter
from receiver.query.params import Param, SqlArgs, project_condition
from receiver.query.shape import money

ENDPOINT = "usage"

BUCKETS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
DEFAULT_WINDOW = {"1m": timedelta(hours=1), "1h": timedelta(hours=24), "1d": timedelta(days=30)}
MAX_BUCKETS = {"1m": 1440, "1h": 24 * 93, "1d": 1100}  # a day, a quarter, three years
# group_by value -> rollup column
DIMENSIONS = {
    "provider": "provider",
    "model": "model",
    "service": "service_name",
    "user": "user_id",
    "environment": "environment",
    "project": "project_id",
}
PER_USER = frozenset({"user", "environment"})  # only the hourly rollups have them
ROLLUPS = {"1m": "llm_metrics_1min", "1h": "llm_metrics_1hour", "1d": "llm_metrics_1day"}
COST_ROLLUP = "cost_analysis_hourly"  # by user (and environment)
ENVIRONMENT_ROLLUP = "usage_environment_hourly"  # by environment, not by user (migration 016)
HOURLY = frozenset({COST_ROLLUP, ENVIRONMENT_ROLLUP})
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"  # UTC midnight: days are UTC days

PARAMS = (
    Param("bucket", "enum", "bucket width", default="1h", choices=tuple(BUCKETS)),
    Param("group_by", "enum_list", "dimensions, comma-separated (none: one row per bucket)", choices=tuple(DIMENSIONS)),
    Param(
        "from",
        "time",
        "first bucket: the one containing this time (default: `to` minus 1 hour for 1m, 24 hours for 1h, "
        "30 days for 1d)",
    ),
    Param("to", "time", "end of the window, exclusive, rounded up to a bucket boundary (default: now)"),
    Param("provider", "string", "only this provider"),
    Param("model", "string", "only this model"),
    Param("service", "string", "only this service"),
    Param("user_id", "string", "only this user (needs bucket 1h or 1d)", max_length=4096),
    Param("environment", "string", "only this environment (needs bucket 1h or 1d)"),
    Param("project", "project", "project id or slug (with auth.mode = api_key: the key's project only)"),
)
# filter parameter -> rollup column
FILTERS = {
    "provider": "provider",
    "model": "model",
    "service": "service_name",
    "user_id": "user_id",
    "environment": "environment",
}


@dataclass(frozen=True)
class UsageQuery:
    bucket: str
    group_by: tuple[str, ...]
    start: datetime
    end: datetime
    filters: dict[str, str]
    project: uuid.UUID | str | None

    @property
    def source(self) -> str:
        if "user" in self.group_by or "user_id" in self.filters:
            return COST_ROLLUP
        if "environment" in self.group_by or "environment" in self.filters:
            return ENVIRONMENT_ROLLUP
        return ROLLUPS[self.bucket]


def _floor(moment: datetime, width: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + (moment - epoch) // width * width


def resolve(values: dict[str, Any], project: uuid.UUID | str | None, now: datetime) -> UsageQuery:
    """Parameters -> a query, with the window aligned to whole buckets; 400 on a window too long for
    its bucket or a per-user question at 1-minute resolution."""
    bucket = values["bucket"]
    width = BUCKETS[bucket]
    group_by = tuple(values.get("group_by") or ())
    filters = {name: values[name] for name in FILTERS if values.get(name) is not None}
    if "user_id" in filters:
        filters["user_id"] = as_key(filters["user_id"]) or filters["user_id"]
    per_user = PER_USER.intersection(group_by) or {"user_id", "environment"} & set(filters)
    if bucket == "1m" and per_user:
        which = sorted(per_user)[0]
        raise BadParameter(
            "bucket",
            f"1m cannot be combined with {which}: usage per user and environment is rolled up per hour "
            "(cost_analysis_hourly, usage_environment_hourly); use bucket=1h or 1d",
        )
    end = values.get("to") or now
    aligned_end = _floor(end, width)
    if aligned_end < end:
        aligned_end += width
    start = values.get("from") or aligned_end - DEFAULT_WINDOW[bucket]
    aligned_start = _floor(start, width)
    if aligned_start >= aligned_end:
        raise BadParameter("from", f"{start.isoformat()} is not before to = {end.isoformat()}")
    buckets = (aligned_end - aligned_start) // width
    if buckets > MAX_BUCKETS[bucket]:
        raise BadParameter(
            "from",
            f"the window holds {buckets} buckets of {bucket}; at most {MAX_BUCKETS[bucket]}: "
            "narrow it or use a wider bucket",
        )
    return UsageQuery(bucket, group_by, aligned_start, aligned_end, filters, project)


def _parts(query: UsageQuery) -> tuple[str, list[str], list[str], SqlArgs]:
    args = SqlArgs()
    if query.source in HOURLY and query.bucket == "1d":
        bucket = f"date_bin(INTERVAL '1 day', bucket, {_ORIGIN})"
    else:
        bucket = "bucket"
    dims = [DIMENSIONS[name] for name in query.group_by]
    where = [f"bucket >= {args.add(query.start)}::timestamptz", f"bucket < {args.add(query.end)}::timestamptz"]
    for name, value in query.filters.items():
        where.append(f"{FILTERS[name]} = {args.add(value)}")
        if name == "user_id":  # lets cost_analysis_hourly_store_user_bucket_idx (migration 013) serve it
            where.append("octet_length(user_id) <= 512")
    tenant = project_condition(args, query.project)
    if tenant:
        where.append(tenant)
    return bucket, dims, where, args


_SUMS = """sum(request_count)::bigint AS requests,
           sum(error_count)::bigint AS errors,
           sum(input_tokens)::bigint AS input_tokens,
           sum(output_tokens)::bigint AS output_tokens,
           sum(total_tokens)::bigint AS total_tokens,
           sum(total_cost) AS cost,
           sum(avg_latency_ms * request_count) / sum(request_count) AS avg_latency_ms,
           min(min_latency_ms) AS min_latency_ms,
           max(max_latency_ms) AS max_latency_ms"""


def build(query: UsageQuery, max_rows: int) -> tuple[str, list[Any]]:
    """Sums per group, and the group's merged histogram read at p50 / p95 / p99 — through the functions of
    migration 013, which visit only the buckets between each row's min and max latency (and all of them
    for a row whose counts they do not bound). Measured against alternatives (unnesting each row's
    buckets and summing them with built-in aggregates): this used the least backend CPU."""
    bucket, dims, where, args = _parts(query)
    keys = ", ".join(["b", *dims])
    sql = f"""
    SELECT b AS bucket{"".join(f", {d}" for d in dims)}, requests, errors, input_tokens, output_tokens,
           total_tokens, cost, avg_latency_ms, min_latency_ms, max_latency_ms,
           q[1] AS p50_latency_ms, q[2] AS p95_latency_ms, q[3] AS p99_latency_ms
    FROM (
        SELECT {bucket} AS b{"".join(f", {d}" for d in dims)}, {_SUMS},
               latency_quantiles(
                   latency_histogram_merge_within(latency_histogram, min_latency_ms, max_latency_ms, request_count),
                   min(min_latency_ms), max(max_latency_ms), sum(request_count)::bigint, '{{0.5,0.95,0.99}}'
               ) AS q
        FROM {query.source}
        WHERE {" AND ".join(where)}
        GROUP BY {keys}
        ORDER BY {keys}
        LIMIT {args.add(max_rows + 1)}
    ) merged
    ORDER BY {", ".join(["bucket", *dims])}
    """
    return sql, args.values


def assemble(query: UsageQuery, rows: list[Any], max_rows: int) -> dict[str, Any]:
    out = []
    for row in rows[:max_rows]:
        item: dict[str, Any] = {"bucket": row["bucket"]}
        for name in query.group_by:
            item[name] = row[DIMENSIONS[name]]
        requests = int(row["requests"])
        item.update(
            {
                "requests": requests,
                "errors": int(row["errors"]),
                "error_rate": int(row["errors"]) / requests if requests else None,
                "input_tokens": int(row["input_tokens"]),
                "output_tokens": int(row["output_tokens"]),
                "total_tokens": int(row["total_tokens"]),
                "cost": money(row["cost"]),
                "avg_latency_ms": row["avg_latency_ms"],
                "min_latency_ms": row["min_latency_ms"],
                "max_latency_ms": row["max_latency_ms"],
                "p50_latency_ms": row["p50_latency_ms"],
                "p95_latency_ms": row["p95_latency_ms"],
                "p99_latency_ms": row["p99_latency_ms"],
            }
        )
        out.append(item)
    return {
        "bucket": query.bucket,
        "from": query.start,
        "to": query.end,
        "group_by": list(query.group_by),
        "source": query.source,
        "rows": out,
        "truncated": len(rows) > max_rows,
    }

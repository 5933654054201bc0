"""GET /api/v1/metrics: the data points of one metric name in a time window, oldest first, in pages.

Every point type comes back with the fields that rebuild it (README, "Metrics: llm_metrics"); fields a
type does not have are left out. Pages follow (ts, point_id) ascending with the same signed keyset
cursor as /spans. Without `to` the window ends now, so following the cursor later also returns the
points that arrived meanwhile (a tail). Pure.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from receiver.query.cursor import Position, query_digest
from receiver.query.params import Param, SqlArgs, project_condition
from receiver.query.shape import fragment

ENDPOINT = "metrics"
MAX_LIMIT = 1000
DEFAULT_WINDOW = timedelta(hours=1)

PARAMS = (
    Param("name", "string", "metric name, e.g. gen_ai.client.operation.duration", required=True, max_length=256),
    Param("from", "time", "points at or after this time (default: `to` minus 1 hour)"),
    Param("to", "time", "points before this time (default: now)"),
    Param("service", "string", "only points of this service"),
    Param("provider", "string", "only points of this provider"),
    Param("model", "string", "only points of this model"),
    Param("project", "project", "project id or slug (with auth.mode = api_key: the key's project only)"),
    Param("limit", "integer", "points per page", default=MAX_LIMIT, minimum=1, maximum=MAX_LIMIT),
    Param("cursor", "cursor", "next_cursor of the previous page; same parameters"),
)
FILTERS = {"service": "service_name", "provider": "provider", "model": "model"}

COLUMNS = (
    "ts",
    "start_ts",
    "point_id",
    "metric_name",
    "metric_type",
    "description",
    "unit",
    "temporality",
    "is_monotonic",
    "value",
    "value_int",
    "count",
    "sum",
    "min",
    "max",
    "bucket_counts",
    "explicit_bounds",
    "scale",
    "zero_count",
    "zero_threshold",
    "positive_offset",
    "positive_bucket_counts",
    "negative_offset",
    "negative_bucket_counts",
    "quantiles",
    "quantile_values",
    "exemplars",
    "flags",
    "service_name",
    "provider",
    "model",
    "attributes",
    "resource_attributes",
)
# Present on some types only: left out of a point when NULL.
_OPTIONAL = COLUMNS[COLUMNS.index("temporality") : COLUMNS.index("exemplars") + 1]
_JSON = frozenset({"exemplars", "attributes", "resource_attributes"})


@dataclass(frozen=True)
class PointQuery:
    values: dict[str, Any]
    project: uuid.UUID | str | None

    @property
    def limit(self) -> int:
        return int(self.values["limit"])

    def digest(self) -> bytes:
        canonical = sorted((k, repr(v)) for k, v in self.values.items() if k not in ("limit", "cursor"))
        return query_digest(ENDPOINT, (canonical, repr(self.project)))


def build(query: PointQuery, after: Position | None, now: datetime) -> tuple[str, list[Any]]:
    args = SqlArgs()
    values = query.values
    end = values.get("to") or now
    start = values.get("from")
    if start is None and after is None:
        start = end - DEFAULT_WINDOW
    # The octet_length condition (always true of a name of at most 256 characters) lets
    # llm_metrics_name_ts_idx serve the query (migration 013: names over 1 KB are not in it).
    where = [
        f"metric_name = {args.add(values['name'])}",
        "octet_length(metric_name) <= 1024",
        f"ts < {args.add(end)}::timestamptz",
    ]
    if start is not None:
        where.append(f"ts >= {args.add(start)}::timestamptz")
    for name, column in FILTERS.items():
        if values.get(name) is not None:
            where.append(f"{column} = {args.add(values[name])}")
    tenant = project_condition(args, query.project)
    if tenant:
        where.append(tenant)
    if after is not None:
        ts, point_id = args.add(after.ts), args.add(uuid.UUID(bytes=after.key))
        where.append(f"ts >= {ts}::timestamptz AND (ts, point_id) > ({ts}::timestamptz, {point_id}::uuid)")
    columns = ", ".join(f"{c}::text AS {c}" if c in _JSON else c for c in COLUMNS)
    sql = (
        f"SELECT {columns} FROM llm_metrics WHERE {' AND '.join(where)} "
        f"ORDER BY ts, point_id LIMIT {args.add(query.limit + 1)}"
    )
    return sql, args.values


def point(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": row["ts"],
        "start_ts": row["start_ts"],
        "name": row["metric_name"],
        "type": row["metric_type"],
        "description": row["description"],
        "unit": row["unit"],
    }
    for column in _OPTIONAL:
        value = row[column]
        if value is None:
            continue
        out[column] = fragment(value) if column in _JSON else value
    if row["value_int"] is not None:
        out["value"] = row["value_int"]  # exact: an integer point is not passed through a double
        del out["value_int"]
    out.update(
        {
            "flags": row["flags"],
            "service": row["service_name"],
            "provider": row["provider"],
            "model": row["model"],
            "attributes": fragment(row["attributes"]),
            "resource_attributes": fragment(row["resource_attributes"]),
        }
    )
    return out


def page(query: PointQuery, rows: list[Any]) -> tuple[list[dict[str, Any]], Position | None]:
    shown = rows[: query.limit]
    following = None
    if len(rows) > query.limit:
        last = shown[-1]
        following = Position(last["ts"], last["point_id"].bytes)
    return [point(r) for r in shown], following

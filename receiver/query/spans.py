"""GET /api/v1/spans: spans matching filters, newest first, in pages with an opaque keyset cursor.

Order: (ts, trace_id, span_id) descending — the primary key of llm_traces (migration 009), a total
order. A page asks for the rows strictly below the last row of the previous page, so pages are
disjoint ranges of that order: every span that matched when paging started is returned exactly once,
however many spans arrive meanwhile (newer ones sort above the first page; late ones dated inside the
range show up on the page that covers their time). No OFFSET: page N costs what page 1 costs.
Pure: builds SQL and shapes rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.convert.genai import as_key
from receiver.query.cursor import Position, query_digest
from receiver.query.params import Param, SqlArgs, limit_literal, project_condition
from receiver.query.shape import SPAN_SUMMARY_COLUMNS, select_list, span_summary

ENDPOINT = "spans"
MAX_LIMIT = 1000

# filter parameter -> column (equality)
EQUALITY_FILTERS = {
    "service": "service_name",
    "provider": "provider",
    "model": "model",
    "operation": "operation",
    "status": "status_code",
    "user_id": "user_id",
    "session_id": "session_id",
    "environment": "environment",
}

# The `status` choices as SQL literals (the only values the parameter accepts).
STATUS_LITERALS = {"ok": "'ok'", "error": "'error'", "unset": "'unset'"}

PARAMS = (
    Param("service", "string", "service.name of the span's resource"),
    Param("provider", "string", "LLM provider (gen_ai.provider.name and its older names), e.g. openai"),
    Param("model", "string", "model (the response model when known, else the request model)"),
    Param("operation", "string", "gen_ai.operation.name (chat, embeddings, execute_tool, ...)"),
    Param("status", "enum", "span status", choices=("ok", "error", "unset")),
    Param("user_id", "string", "user id (user.id, enduser.id, ...)", max_length=4096),
    Param("session_id", "string", "session / conversation id", max_length=4096),
    Param("environment", "string", "deployment.environment.name"),
    Param("project", "project", "project id or slug (with auth.mode = api_key: the key's project only)"),
    Param("from", "time", "spans that started at or after this time (RFC 3339)"),
    Param("to", "time", "spans that started before this time (RFC 3339)"),
    Param("min_duration_ms", "number", "spans that lasted at least this long", minimum=0),
    Param(
        "attribute",
        "attribute",
        "key=value: the span attribute `key` equals `value` (compared as text; repeat for several). "
        "Not indexed: combine it with a time window or an indexed filter",
    ),
    Param("limit", "integer", "spans per page", default=100, minimum=1, maximum=MAX_LIMIT),
    Param("cursor", "cursor", "next_cursor of the previous page; same filters"),
)


@dataclass(frozen=True)
class SpanQuery:
    values: dict[str, Any]
    project: uuid.UUID | str | None

    @property
    def limit(self) -> int:
        return int(self.values["limit"])

    def digest(self) -> bytes:
        """The cursor binding: every filter and the project, not the page size."""
        canonical = sorted(
            (name, repr(value)) for name, value in self.values.items() if name not in ("limit", "cursor")
        )
        return query_digest(ENDPOINT, (canonical, repr(self.project)))


# Filters that the hourly rollup counts exactly (it groups LLM spans by them, and a span that matches one
# is an LLM span). A page filtered by these alone, without a time window, asks the rollup how far back
# its spans go (rollup_bound): a rare model without a window otherwise walks the whole table backwards
# (at 5M spans: 180-260 ms for a model with 1 % of the spans, a full scan for one with none).
ROLLUP_FILTERS = {"provider": "provider", "model": "model", "service": "service_name"}
_NOT_IN_ROLLUP = (*(n for n in EQUALITY_FILTERS if n not in ROLLUP_FILTERS), "min_duration_ms", "attribute")


def rollup_bound_applies(query: SpanQuery) -> bool:
    values = query.values
    return (
        values.get("from") is None
        and any(values.get(name) is not None for name in ROLLUP_FILTERS)
        and not any(values.get(name) for name in _NOT_IN_ROLLUP)
    )


def rollup_bound_sql(query: SpanQuery, after: Position | None) -> tuple[str, list[Any]]:
    """The newest hour H such that the hours from H up to the page's top hold at least `limit + 1` matching
    spans, by llm_metrics_1hour; NULL when they hold fewer. Exact: then the page's rows all start at or
    after H, so `ts >= H` changes no answer and lets the scan stop there. Only hours wholly below the
    page's top (the cursor or `to`) are counted, so no counted span lies above it; spans the rollup has
    not seen yet (ingested since its last pass) only add to the matches."""
    args = SqlArgs()
    values = query.values
    where = [f"{column} = {args.add(values[name])}" for name, column in ROLLUP_FILTERS.items() if values.get(name)]
    tenant = project_condition(args, query.project)
    if tenant:
        where.append(tenant)
    tops = [value for value in (values.get("to"), after.ts if after is not None else None) if value is not None]
    if tops:
        where.append(f"bucket + INTERVAL '1 hour' <= {args.add(min(tops))}::timestamptz")
    sql = f"""
    SELECT max(bucket) FILTER (WHERE running >= {limit_literal(query.limit + 1)}) AS bound
    FROM (SELECT bucket, sum(spans) OVER (ORDER BY bucket DESC) AS running
          FROM (SELECT bucket, sum(request_count) AS spans FROM llm_metrics_1hour
                WHERE {" AND ".join(where)} GROUP BY bucket) per_hour) cumulative
    """
    return sql, args.values


def build(query: SpanQuery, after: Position | None, lower: datetime | None = None) -> tuple[str, list[Any]]:
    """SELECT of one page: `limit + 1` rows, the extra one only telling whether another page exists.
    `lower`: the rollup's bound (rollup_bound_sql), when known."""
    args = SqlArgs()
    where: list[str] = []
    if lower is not None:
        where.append(f"ts >= {args.add(lower)}::timestamptz")
    values = query.values
    for name, column in EQUALITY_FILTERS.items():
        value = values.get(name)
        if value is None:
            continue
        if name in ("user_id", "session_id"):
            value = as_key(value)  # stored the same way: ids over 512 bytes keep a prefix and a hash
        if name == "status":
            # A literal, so that a generic plan may use the partial index on errors (migration 013).
            where.append(f"{column} = {STATUS_LITERALS[value]}")
            continue
        where.append(f"{column} = {args.add(value)}")
    tenant = project_condition(args, query.project)
    if tenant:
        where.append(tenant)
    if values.get("from") is not None:
        where.append(f"ts >= {args.add(values['from'])}::timestamptz")
    if values.get("to") is not None:
        where.append(f"ts < {args.add(values['to'])}::timestamptz")
    if values.get("min_duration_ms") is not None:
        where.append(f"duration_ms >= {args.add(float(values['min_duration_ms']))}::float8")
    for key, value in values.get("attribute") or ():
        where.append(f"attributes ->> {args.add(key)}::text = {args.add(value)}::text")
    if after is not None:
        ts = args.add(after.ts)
        # The plain `ts <=` lets every index on ts (and partition pruning) start at the cursor; the row
        # comparison then drops the rows of the same microsecond already returned.
        where.append(
            f"ts <= {ts}::timestamptz AND (ts, trace_id, span_id) < "
            f"({ts}::timestamptz, {args.add(uuid.UUID(bytes=after.key))}::uuid, {args.add(after.text)}::text)"
        )
    sql = (
        f"SELECT {select_list(SPAN_SUMMARY_COLUMNS)} FROM llm_traces"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY ts DESC, trace_id DESC, span_id DESC LIMIT {limit_literal(query.limit + 1)}"
    )
    return sql, args.values


def page(query: SpanQuery, rows: list[Any]) -> tuple[list[dict[str, Any]], Position | None]:
    """The spans of the page and where the next page starts (None: this was the last)."""
    shown = rows[: query.limit]
    following = None
    if len(rows) > query.limit:
        last = shown[-1]
        following = Position(last["ts"], last["trace_id"].bytes, last["span_id"])
    return [span_summary(r) for r in shown], following

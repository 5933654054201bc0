"""GET /api/v1/sessions/{session_id}: the traces of one session (conversation) in order, with totals.

The session's spans come from `btree (session_id, ts)` (migration 009); a trace belongs to the session
when any of its spans carries the session id. Its totals cover all of its spans (the root HTTP span
often carries no session id), read through `btree (trace_id)`. At most `limit` traces, the first ones
of the session; `truncated` says when there are more. Pure.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from receiver.convert.genai import as_key
from receiver.query.params import Param, SqlArgs, project_condition
from receiver.query.shape import hex_id, money

ENDPOINT = "session"
MAX_LIMIT = 1000

PARAMS = (
    Param(
        "session_id",
        "string",
        "the session id (session.id, gen_ai.conversation.id, ...)",
        location="path",
        max_length=4096,
    ),
    Param("limit", "integer", "traces at most (the session's first)", default=200, minimum=1, maximum=MAX_LIMIT),
    Param("from", "time", "optional: only spans at or after this time (fewer partitions / chunks to search)"),
    Param("to", "time", "optional: only spans before this time"),
)


def build(
    session_id: str,
    project: uuid.UUID | str | None,
    limit: int,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> tuple[str, list[Any]]:
    args = SqlArgs()
    conditions: dict[str, list[str]] = {"s": [f"s.session_id = {args.add(as_key(session_id))}"], "t": []}
    start, end = window
    for alias, where in conditions.items():
        tenant = project_condition(args, project, f"{alias}.project_id")
        if tenant:
            where.append(tenant)
        if start is not None:
            where.append(f"{alias}.ts >= {args.add(start)}::timestamptz")
        if end is not None:
            where.append(f"{alias}.ts < {args.add(end)}::timestamptz")
    joined = "".join(f" AND {c}" for c in conditions["t"])
    sql = f"""
    WITH session_traces AS (
        SELECT s.trace_id, min(s.ts) AS first_ts
        FROM llm_traces s
        WHERE {" AND ".join(conditions["s"])}
        GROUP BY s.trace_id
        ORDER BY first_ts, s.trace_id
        LIMIT {args.add(limit + 1)}
    )
    SELECT t.trace_id,
           min(t.ts) AS start,
           max(t.end_ts) AS "end",
           count(*) AS spans,
           count(*) FILTER (WHERE t.provider IS NOT NULL OR t.model IS NOT NULL) AS llm_spans,
           count(*) FILTER (WHERE t.status_code = 'error') AS errors,
           coalesce(sum(t.input_tokens), 0) AS input_tokens,
           coalesce(sum(t.output_tokens), 0) AS output_tokens,
           coalesce(sum(t.total_tokens), 0) AS total_tokens,
           sum(t.total_cost) AS cost,
           array_agg(DISTINCT t.model) FILTER (WHERE t.model IS NOT NULL) AS models,
           (array_agg(t.span_name ORDER BY t.ts) FILTER (WHERE t.parent_span_id IS NULL))[1] AS root_name,
           (array_agg(t.service_name ORDER BY t.ts))[1] AS service,
           array_agg(DISTINCT t.user_id) FILTER (WHERE t.user_id IS NOT NULL) AS users
    FROM session_traces st
    JOIN llm_traces t ON t.trace_id = st.trace_id{joined}
    GROUP BY t.trace_id, st.first_ts
    ORDER BY st.first_ts, t.trace_id
    """
    return sql, args.values


def assemble(session_id: str, rows: list[Any], limit: int) -> dict[str, Any]:
    shown = rows[:limit]
    traces = []
    cost = Decimal(0)
    priced = False
    totals = {"traces": len(shown), "spans": 0, "llm_spans": 0, "errors": 0}
    totals.update(input_tokens=0, output_tokens=0, total_tokens=0)
    for row in shown:
        traces.append(
            {
                "trace_id": hex_id(row["trace_id"]),
                "start": row["start"],
                "end": row["end"],
                "duration_ms": (row["end"] - row["start"]).total_seconds() * 1000,
                "root_name": row["root_name"],
                "service": row["service"],
                "spans": row["spans"],
                "llm_spans": row["llm_spans"],
                "errors": row["errors"],
                "input_tokens": int(row["input_tokens"]),
                "output_tokens": int(row["output_tokens"]),
                "total_tokens": int(row["total_tokens"]),
                "cost": money(row["cost"]),
                "models": sorted(row["models"] or []),
                "users": sorted(row["users"] or []),
            }
        )
        for column in ("spans", "llm_spans", "errors", "input_tokens", "output_tokens", "total_tokens"):
            totals[column] += int(row[column])
        if row["cost"] is not None:
            cost += row["cost"]
            priced = True
    return {
        "session_id": session_id,
        "start": shown[0]["start"] if shown else None,
        "end": max((row["end"] for row in shown), default=None),
        "totals": {**totals, "cost": money(cost) if priced else None},
        "traces": traces,
        "truncated": len(rows) > limit,
    }

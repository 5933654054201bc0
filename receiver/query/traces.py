"""GET /api/v1/traces/{trace_id}: every span of one trace as a tree, with LLM fields, events, and the
log records that carry the trace id (each under the span whose id it carries).

The spans come from `btree (trace_id)` on llm_traces (migration 009), the logs from
`btree (trace_id)` on llm_logs (migration 013). The answer is bounded twice: at most
`query.max_trace_spans` spans (and as many log records), and at most `query.max_response_bytes` of
rows — whatever does not fit is left out and `truncated` says so. Pure: builds SQL, shapes rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from receiver.query.params import Param, SqlArgs, project_condition
from receiver.query.shape import LOG_COLUMNS, SPAN_FULL_COLUMNS, hex_id, log_record, money, select_list, span_full

ENDPOINT = "trace"

PARAMS = (
    Param("trace_id", "trace_id", "the trace id: 32 hex digits (or the uuid form)", location="path"),
    Param(
        "from",
        "time",
        "optional: only spans (and log records) at or after this time. A trace id says nothing of its time, "
        "so without a window every partition / chunk of the retention is searched; a client that knows when "
        "the trace happened (from a span list) passes a window around it",
    ),
    Param("to", "time", "optional: only spans (and log records) before this time"),
)


def _window(args: SqlArgs, where: list[str], window: tuple[datetime | None, datetime | None]) -> None:
    start, end = window
    if start is not None:
        where.append(f"ts >= {args.add(start)}::timestamptz")
    if end is not None:
        where.append(f"ts < {args.add(end)}::timestamptz")


def _by_trace_sql(
    table: str,
    columns: Any,
    tiebreak: str,
    trace_id: uuid.UUID,
    project: uuid.UUID | str | None,
    limit: int,
    window: tuple[datetime | None, datetime | None],
) -> tuple[str, list[Any]]:
    """One trace's rows of `table` (of the caller's project, inside the optional window), oldest first,
    one more than `limit` so the caller can tell it was cut."""
    args = SqlArgs()
    where = [f"trace_id = {args.add(trace_id)}::uuid"]
    tenant = project_condition(args, project)
    if tenant:
        where.append(tenant)
    _window(args, where, window)
    sql = (
        f"SELECT {select_list(columns)} FROM {table} WHERE {' AND '.join(where)} "
        f"ORDER BY ts, {tiebreak} LIMIT {args.add(limit + 1)}"
    )
    return sql, args.values


def spans_sql(
    trace_id: uuid.UUID,
    project: uuid.UUID | str | None,
    max_spans: int,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> tuple[str, list[Any]]:
    return _by_trace_sql("llm_traces", SPAN_FULL_COLUMNS, "span_id", trace_id, project, max_spans, window)


def logs_sql(
    trace_id: uuid.UUID,
    project: uuid.UUID | str | None,
    max_logs: int,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> tuple[str, list[Any]]:
    return _by_trace_sql("llm_logs", LOG_COLUMNS, "record_id", trace_id, project, max_logs, window)


def _tree_order(spans: list[dict[str, Any]]) -> list[str]:
    """Put spans (sorted by start) in depth-first order, each with `depth` and `children` (span ids);
    return the root span ids. A span whose parent is not in the trace (never sent, or cut off) is a
    root; a malformed cycle cannot hang the walk (each span is visited once, the rest become roots)."""
    first_with_id: dict[str, dict[str, Any]] = {}
    for span in spans:
        span["children"] = []
        first_with_id.setdefault(span["span_id"], span)
    kids: dict[int, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    for span in spans:
        parent = first_with_id.get(span["parent_span_id"] or "")
        if parent is None or parent is span:
            roots.append(span)
        else:
            parent["children"].append(span["span_id"])
            kids.setdefault(id(parent), []).append(span)
    ordered: list[dict[str, Any]] = []
    seen: set[int] = set()

    def walk(root: dict[str, Any]) -> None:
        stack = [(root, 0)]
        while stack:
            span, depth = stack.pop()
            if id(span) in seen:
                continue
            seen.add(id(span))
            span["depth"] = depth
            ordered.append(span)
            stack.extend((child, depth + 1) for child in reversed(kids.get(id(span), [])))

    for root in roots:
        walk(root)
    for span in spans:  # reachable only through a cycle
        if id(span) not in seen:
            roots.append(span)
            walk(span)
    spans[:] = ordered
    return [root["span_id"] for root in roots]


def assemble(trace_id: uuid.UUID, span_rows: list[Any], log_rows: list[Any], truncated: bool) -> dict[str, Any]:
    spans = [span_full(row) for row in span_rows]
    for span in spans:
        span["logs"] = []
    by_id = {span["span_id"]: span for span in spans}
    trace_logs: list[dict[str, Any]] = []
    for row in log_rows:
        record = log_record(row)
        owner = by_id.get(record["span_id"] or "")
        (owner["logs"] if owner is not None else trace_logs).append(record)
    roots = _tree_order(spans)
    cost = Decimal(0)
    priced = False
    totals = {"spans": len(spans), "llm_spans": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0}
    totals["total_tokens"] = 0
    for row in span_rows:
        if row["provider"] is not None or row["model"] is not None:
            totals["llm_spans"] += 1
        totals["errors"] += row["status_code"] == "error"
        for column in ("input_tokens", "output_tokens", "total_tokens"):
            totals[column] += row[column] or 0
        if row["total_cost"] is not None:
            cost += row["total_cost"]
            priced = True
    start = min((row["ts"] for row in span_rows), default=None)
    end = max((row["end_ts"] for row in span_rows), default=None)
    return {
        "trace_id": hex_id(trace_id),
        "start": start,
        "end": end,
        "duration_ms": (end - start).total_seconds() * 1000 if start and end else None,
        "totals": {**totals, "cost": money(cost) if priced else None, "log_records": len(log_rows)},
        "roots": roots,
        "spans": spans,
        "logs": trace_logs,
        "truncated": truncated,
    }

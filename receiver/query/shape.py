"""Rows -> JSON-ready dicts, shared by the endpoints. Pure.

Conventions of every answer: trace ids as 32 hex digits (as OTLP/JSON writes them), times as RFC 3339
in UTC, money as decimal strings (exact: `numeric` never passes through a binary float), attribute
maps and events as the JSON stored (passed through unparsed, as orjson fragments).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

# The span columns a list of spans shows: everything an operator filters or sorts by, no payloads.
SPAN_SUMMARY_COLUMNS = (
    "ts",
    "end_ts",
    "trace_id",
    "span_id",
    "parent_span_id",
    "span_name",
    "span_kind",
    "service_name",
    "provider",
    "model",
    "operation",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "total_cost",
    "duration_ms",
    "status_code",
    "status_message",
    "user_id",
    "session_id",
    "environment",
)
# One trace shows every column of its spans.
SPAN_FULL_COLUMNS = (
    *SPAN_SUMMARY_COLUMNS,
    "scope_name",
    "scope_version",
    "request_model",
    "response_model",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "input_cost",
    "output_cost",
    "cost_source",
    "tags",
    "finish_reasons",
    "trace_state",
    "attributes",
    "resource_attributes",
    "events",
    "links",
)
LOG_COLUMNS = (
    "ts",
    "observed_ts",
    "span_id",
    "severity_number",
    "severity_text",
    "body",
    "body_json",
    "event_name",
    "service_name",
    "attributes",
)
# Columns holding JSON: asyncpg hands jsonb over as text, passed through as is.
_JSON = frozenset({"attributes", "resource_attributes", "events", "links", "body_json"})


def hex_id(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def fragment(text: str | None) -> orjson.Fragment | None:
    return None if text is None else orjson.Fragment(text)


def select_list(columns: tuple[str, ...], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{c}" if c not in _JSON else f"{prefix}{c}::text AS {c}" for c in columns)


def span_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "trace_id": hex_id(row["trace_id"]),
        "span_id": row["span_id"],
        "parent_span_id": row["parent_span_id"],
        "name": row["span_name"],
        "kind": row["span_kind"],
        "service": row["service_name"],
        "start": row["ts"],
        "end": row["end_ts"],
        "duration_ms": row["duration_ms"],
        "status": {"code": row["status_code"], "message": row["status_message"]},
        "provider": row["provider"],
        "model": row["model"],
        "operation": row["operation"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "total_tokens": row["total_tokens"],
        "cost": money(row["total_cost"]),
        "user_id": row["user_id"],
        "session_id": row["session_id"],
        "environment": row["environment"],
    }


def span_full(row: Mapping[str, Any]) -> dict[str, Any]:
    span = span_summary(row)
    span.update(
        {
            "scope": {"name": row["scope_name"], "version": row["scope_version"]},
            "request_model": row["request_model"],
            "response_model": row["response_model"],
            "cache_read_tokens": row["cache_read_tokens"],
            "cache_creation_tokens": row["cache_creation_tokens"],
            "reasoning_tokens": row["reasoning_tokens"],
            "input_cost": money(row["input_cost"]),
            "output_cost": money(row["output_cost"]),
            "cost_source": row["cost_source"],
            "finish_reasons": row["finish_reasons"],
            "tags": row["tags"],
            "trace_state": row["trace_state"],
            "attributes": fragment(row["attributes"]),
            "resource_attributes": fragment(row["resource_attributes"]),
            "events": fragment(row["events"]),
            "links": fragment(row["links"]),
        }
    )
    return span


def log_record(row: Mapping[str, Any]) -> dict[str, Any]:
    body: Any = fragment(row["body_json"]) if row["body_json"] is not None else row["body"]
    return {
        "ts": row["ts"],
        "observed_ts": row["observed_ts"],
        "span_id": row["span_id"],
        "severity_number": row["severity_number"],
        "severity_text": row["severity_text"],
        "event_name": row["event_name"],
        "service": row["service_name"],
        "body": body,
        "attributes": fragment(row["attributes"]),
    }


def approximate_bytes(row: Mapping[str, Any], columns: tuple[str, ...]) -> int:
    """A row's share of the answer's size in bytes: its text and JSON columns plus a fixed overhead."""
    size = 200
    for column in columns:
        value = row[column]
        if isinstance(value, str):
            size += len(value) if value.isascii() else len(value.encode())
    return size

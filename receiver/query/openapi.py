"""The OpenAPI 3.1 document of the read API, served at /api/v1/openapi.json.

Parameters come from the endpoint modules' `PARAMS` (the declarations the server parses requests
with), so the document cannot describe a parameter the server does not take or miss one it does.
Response schemas are written here, next to each other, from what the modules' shaping functions emit.
"""

from __future__ import annotations

from typing import Any

from receiver import __version__
from receiver.query import models, points, sessions, spans, traces, usage
from receiver.query.params import Param

PREFIX = "/api/v1"

_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_MONEY = {"type": ["string", "null"], "pattern": r"^-?\d+(\.\d+)?$", "description": "USD, exact decimal"}
_JSON_VALUE: dict[str, Any] = {}  # any JSON value (attribute maps, events, log bodies)

_SPAN_SUMMARY = {
    "type": "object",
    "required": ["trace_id", "span_id", "name", "start", "end", "duration_ms", "status"],
    "properties": {
        "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "span_id": {"type": "string"},
        "parent_span_id": _NULLABLE_STRING,
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "service": _NULLABLE_STRING,
        "start": _TIME,
        "end": _TIME,
        "duration_ms": {"type": "number"},
        "status": {
            "type": "object",
            "properties": {"code": {"type": "string", "enum": ["ok", "error", "unset"]}, "message": _NULLABLE_STRING},
        },
        "provider": _NULLABLE_STRING,
        "model": _NULLABLE_STRING,
        "operation": _NULLABLE_STRING,
        "input_tokens": _NULLABLE_INT,
        "output_tokens": _NULLABLE_INT,
        "total_tokens": _NULLABLE_INT,
        "cost": _MONEY,
        "user_id": _NULLABLE_STRING,
        "session_id": _NULLABLE_STRING,
        "environment": _NULLABLE_STRING,
    },
}
_LOG = {
    "type": "object",
    "properties": {
        "ts": _TIME,
        "observed_ts": _NULLABLE_TIME,
        "span_id": _NULLABLE_STRING,
        "severity_number": {"type": "integer"},
        "severity_text": _NULLABLE_STRING,
        "event_name": _NULLABLE_STRING,
        "service": _NULLABLE_STRING,
        "body": _JSON_VALUE,
        "attributes": {"type": "object"},
    },
}
_SPAN_FULL = {
    "type": "object",
    "required": [*_SPAN_SUMMARY["required"], "depth", "children", "logs", "attributes"],
    "properties": {
        **_SPAN_SUMMARY["properties"],
        "scope": {"type": "object", "properties": {"name": _NULLABLE_STRING, "version": _NULLABLE_STRING}},
        "request_model": _NULLABLE_STRING,
        "response_model": _NULLABLE_STRING,
        "cache_read_tokens": _NULLABLE_INT,
        "cache_creation_tokens": _NULLABLE_INT,
        "reasoning_tokens": _NULLABLE_INT,
        "input_cost": _MONEY,
        "output_cost": _MONEY,
        "cost_source": _NULLABLE_STRING,
        "finish_reasons": {"type": ["array", "null"], "items": {"type": "string"}},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "trace_state": _NULLABLE_STRING,
        "attributes": {"type": "object"},
        "resource_attributes": {"type": "object"},
        "events": {"type": ["array", "null"]},
        "links": {"type": ["array", "null"]},
        "depth": {"type": "integer", "minimum": 0},
        "children": {"type": "array", "items": {"type": "string"}},
        "logs": {"type": "array", "items": _LOG},
    },
}
_TOTALS = {
    "input_tokens": {"type": "integer"},
    "output_tokens": {"type": "integer"},
    "total_tokens": {"type": "integer"},
    "cost": _MONEY,
    "errors": {"type": "integer"},
    "spans": {"type": "integer"},
    "llm_spans": {"type": "integer"},
}
_TRACE = {
    "type": "object",
    "required": ["trace_id", "spans", "roots", "logs", "totals", "truncated"],
    "properties": {
        "trace_id": {"type": "string"},
        "start": _NULLABLE_TIME,
        "end": _NULLABLE_TIME,
        "duration_ms": _NULLABLE_NUMBER,
        "totals": {"type": "object", "properties": {**_TOTALS, "log_records": {"type": "integer"}}},
        "roots": {"type": "array", "items": {"type": "string"}},
        "spans": {"type": "array", "items": _SPAN_FULL, "description": "depth-first order, children after parent"},
        "logs": {"type": "array", "items": _LOG, "description": "records of the trace whose span is not in it"},
        "truncated": {"type": "boolean"},
    },
}
_PAGE_CURSOR = {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null: last page"}
_SPANS = {
    "type": "object",
    "required": ["spans", "next_cursor"],
    "properties": {"spans": {"type": "array", "items": _SPAN_SUMMARY}, "next_cursor": _PAGE_CURSOR},
}
_SESSION = {
    "type": "object",
    "required": ["session_id", "traces", "totals", "truncated"],
    "properties": {
        "session_id": {"type": "string"},
        "start": _NULLABLE_TIME,
        "end": _NULLABLE_TIME,
        "totals": {"type": "object", "properties": {**_TOTALS, "traces": {"type": "integer"}}},
        "traces": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    **_TOTALS,
                    "trace_id": {"type": "string"},
                    "start": _TIME,
                    "end": _TIME,
                    "duration_ms": {"type": "number"},
                    "root_name": _NULLABLE_STRING,
                    "service": _NULLABLE_STRING,
                    "models": {"type": "array", "items": {"type": "string"}},
                    "users": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "truncated": {"type": "boolean"},
    },
}
_USAGE_ROW = {
    "type": "object",
    "required": ["bucket", "requests", "errors", "cost"],
    "properties": {
        "bucket": _TIME,
        **{name: _NULLABLE_STRING for name in usage.DIMENSIONS},
        "requests": {"type": "integer"},
        "errors": {"type": "integer"},
        "error_rate": _NULLABLE_NUMBER,
        "input_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cost": _MONEY,
        "avg_latency_ms": _NULLABLE_NUMBER,
        "min_latency_ms": _NULLABLE_NUMBER,
        "max_latency_ms": _NULLABLE_NUMBER,
        "p50_latency_ms": _NULLABLE_NUMBER,
        "p95_latency_ms": _NULLABLE_NUMBER,
        "p99_latency_ms": _NULLABLE_NUMBER,
    },
}
_USAGE = {
    "type": "object",
    "required": ["bucket", "from", "to", "group_by", "rows", "truncated"],
    "properties": {
        "bucket": {"type": "string", "enum": list(usage.BUCKETS)},
        "from": _TIME,
        "to": _TIME,
        "group_by": {"type": "array", "items": {"type": "string"}},
        "source": {"type": "string", "description": "the rollup view the answer was read from"},
        "rows": {"type": "array", "items": _USAGE_ROW},
        "truncated": {"type": "boolean"},
    },
}
_POINTS = {
    "type": "object",
    "required": ["points", "next_cursor"],
    "properties": {
        "points": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["ts", "name", "type"],
                "properties": {
                    "ts": _TIME,
                    "start_ts": _NULLABLE_TIME,
                    "name": {"type": "string"},
                    "type": {
                        "type": "string",
                        "enum": ["gauge", "sum", "histogram", "exponential_histogram", "summary"],
                    },
                    "unit": _NULLABLE_STRING,
                    "value": _NULLABLE_NUMBER,
                    "attributes": {"type": "object"},
                },
            },
        },
        "next_cursor": _PAGE_CURSOR,
    },
}
_MODELS = {
    "type": "object",
    "required": ["at", "models", "truncated"],
    "properties": {
        "at": {"type": "string", "format": "date"},
        "currency": {"type": "string"},
        "unit": {"type": "string"},
        "models": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "provider": {"type": "string"},
                    "model": {"type": "string"},
                    "effective_date": {"type": "string", "format": "date"},
                    "source": {"type": "string"},
                    **{column: _MONEY for column in models.PRICE_COLUMNS},
                },
            },
        },
        "truncated": {"type": "boolean"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "parameter": {"type": "string", "description": "the parameter a 400 is about"},
            },
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_COMMON_ERRORS = {
    "400": _error("a parameter is invalid (error.parameter names it)"),
    "401": _error("auth.mode = api_key and no valid key was sent"),
    "403": _error("the key lacks the read scope, or asks for another project"),
    "503": {
        **_error(
            "the query ran out of time (query.statement_timeout_ms), every read connection is busy, "
            "or the database is not reachable; retry after Retry-After seconds"
        ),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def _operation(
    summary: str, description: str, params: tuple[Param, ...], schema: str, op_id: str, not_found: bool = False
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        },
        **_COMMON_ERRORS,
    }
    if not_found:
        responses["404"] = _error("nothing with this id (in the key's project)")
    return {
        "get": {
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "parameters": [p.openapi() for p in params],
            "responses": responses,
        }
    }


def _doc(module: Any) -> str:
    return " ".join((module.__doc__ or "").split())


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LLM Observatory read API",
            "version": __version__,
            "description": (
                "Traces, spans, sessions, usage and cost, metric points and prices stored by the LLM Observatory "
                "receiver. Times are RFC 3339 (UTC), trace ids 32 hex digits, money exact decimal strings (USD). "
                "With auth.mode = api_key send `Authorization: Bearer <key>` (or `x-api-key`) of a key with the "
                "read scope: every answer is limited to that key's project."
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            "schemas": {
                "Error": _ERROR,
                "Trace": _TRACE,
                "Spans": _SPANS,
                "Session": _SESSION,
                "Usage": _USAGE,
                "Points": _POINTS,
                "Models": _MODELS,
            },
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": {
            f"{PREFIX}/traces/{{trace_id}}": _operation(
                "One trace as a tree", _doc(traces), traces.PARAMS, "Trace", "getTrace", not_found=True
            ),
            f"{PREFIX}/spans": _operation("Spans, newest first", _doc(spans), spans.PARAMS, "Spans", "listSpans"),
            f"{PREFIX}/sessions/{{session_id}}": _operation(
                "One session's traces", _doc(sessions), sessions.PARAMS, "Session", "getSession", not_found=True
            ),
            f"{PREFIX}/usage": _operation("Usage and cost per bucket", _doc(usage), usage.PARAMS, "Usage", "getUsage"),
            f"{PREFIX}/metrics": _operation(
                "Points of one metric", _doc(points), points.PARAMS, "Points", "listMetricPoints"
            ),
            f"{PREFIX}/models": _operation("Prices in effect", _doc(models), models.PARAMS, "Models", "listModels"),
        },
    }

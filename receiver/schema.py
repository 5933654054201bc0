"""Row layouts shared by conversion (which builds tuples) and storage (which COPYs them).

Conversion produces plain tuples for speed; this module is the one place that says which column each
tuple position lands in, so the two sides cannot drift apart. It holds names only: no I/O, no OTLP.
"""

from __future__ import annotations

from typing import Final

TRACES_TABLE: Final = "llm_traces"

# Order matters: converters build tuples in exactly this order. Every signal table ends with
# `project_id`: the project of the API key that sent the row (NULL with auth.mode = none).
TRACES_COLUMNS: Final[tuple[str, ...]] = (
    "ts",
    "end_ts",
    "trace_id",
    "span_id",
    "parent_span_id",
    "span_name",
    "span_kind",
    "service_name",
    "scope_name",
    "scope_version",
    "provider",
    "model",
    "request_model",
    "response_model",
    "operation",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "input_cost",
    "output_cost",
    "total_cost",
    "cost_source",
    "duration_ms",
    "status_code",
    "status_message",
    "user_id",
    "session_id",
    "environment",
    "tags",
    "finish_reasons",
    "trace_state",
    "attributes",
    "resource_attributes",
    "events",
    "links",
    "project_id",
)

METRICS_TABLE: Final = "llm_metrics"

METRICS_COLUMNS: Final[tuple[str, ...]] = (
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
    "scope_name",
    "scope_version",
    "attributes",
    "resource_attributes",
    "project_id",
)

LOGS_TABLE: Final = "llm_logs"

LOGS_COLUMNS: Final[tuple[str, ...]] = (
    "ts",
    "observed_ts",
    "record_id",
    "trace_id",
    "span_id",
    "severity_number",
    "severity_text",
    "body",
    "body_json",
    "event_name",
    "flags",
    "service_name",
    "provider",
    "model",
    "scope_name",
    "scope_version",
    "attributes",
    "resource_attributes",
    "project_id",
)

# Signal name -> target table; the pipeline shares its queue fairly between these. A signal is added
# here when its front-end route and converter exist (receiver.frontends.signals).
SIGNAL_TABLES: Final[dict[str, str]] = {"traces": TRACES_TABLE, "metrics": METRICS_TABLE, "logs": LOGS_TABLE}

TABLE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    TRACES_TABLE: TRACES_COLUMNS,
    METRICS_TABLE: METRICS_COLUMNS,
    LOGS_TABLE: LOGS_COLUMNS,
}

"""OTLP ExportTraceServiceRequest -> `llm_traces` row tuples (columns in `receiver.schema`).

Pure: no I/O, no globals. Invalid spans, and spans whose start time is outside the accepted window
(receiver.convert.window), are counted and described (the front end reports them in
`partial_success`); every valid span of the same request still becomes a row. Non-LLM spans are rows
too, with NULL LLM columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from receiver.convert.attributes import ConversionStats, clean_text, key_values
from receiver.convert.budget import charge_texts
from receiver.convert.common import Converted, ConvertOptions
from receiver.convert.envelope import SERVICE_NAME_KEY, json_text
from receiver.convert.genai import ENVIRONMENT_KEYS, LLM_ATTRIBUTE_KEYS, as_text, extract_llm_fields, first
from receiver.convert.pgvalues import Uuid, timestamp_from_unix_nanos
from receiver.convert.pricing import PriceBook, compute_cost

SIGNAL = "traces"  # the key of this signal's window in ConvertOptions.windows
START_TIME = "start time"  # what the time window is checked on, as rejection messages name it
SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
# Every attribute key a row reads outside the JSON maps (span attributes: LLM columns and environment;
# resource attributes: service name and environment).
ROW_ATTRIBUTE_KEYS: frozenset[str] = LLM_ATTRIBUTE_KEYS | frozenset(ENVIRONMENT_KEYS) | {SERVICE_NAME_KEY}


def span_problem(span: Any) -> str | None:
    """Why a span cannot be stored, or None. Checked before any work is spent on it."""
    trace_id = span.trace_id
    if len(trace_id) != 16:
        return f"trace_id has {len(trace_id)} bytes, expected 16"
    if trace_id == _ZERO_TRACE_ID:
        return "trace_id is all zeros"
    span_id = span.span_id
    if len(span_id) != 8:
        return f"span_id has {len(span_id)} bytes, expected 8"
    if span_id == _ZERO_SPAN_ID:
        return "span_id is all zeros"
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return f"parent_span_id has {len(parent)} bytes, expected 8 or none"
    if span.start_time_unix_nano == 0:
        return "start_time_unix_nano is missing"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "end_time_unix_nano is before start_time_unix_nano"
    return None


def describe_span(index: int, name: str, trace_id: bytes) -> str:
    """How a rejection message names a span: its index in the request, its name, its trace id."""
    shown = name if len(name) <= 64 else name[:64] + "…"
    return f"span {index} ({shown!r}, trace {trace_id.hex() or '-'})"


def _events(span: Any, limit: int, stats: ConversionStats) -> str | None:
    if not span.events:
        return None
    events = []
    for event in span.events:
        item: dict[str, Any] = {
            "time_unix_nano": event.time_unix_nano,
            "name": clean_text(event.name, limit, stats),
            "attributes": key_values(event.attributes, limit, stats),
        }
        if event.dropped_attributes_count:
            item["dropped_attributes_count"] = event.dropped_attributes_count
        events.append(item)
    return json_text(events)


def _links(span: Any, limit: int, stats: ConversionStats) -> str | None:
    if not span.links:
        return None
    links = []
    for link in span.links:
        item: dict[str, Any] = {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "attributes": key_values(link.attributes, limit, stats),
        }
        if link.trace_state:
            item["trace_state"] = clean_text(link.trace_state, limit, stats)
        links.append(item)
    return json_text(links)


@dataclass(frozen=True, slots=True)
class RowContext:
    """What every span row of one (resource, scope) shares."""

    service_name: str | None
    scope_name: str | None
    scope_version: str | None
    resource_json: str
    resource_environment: str | None
    price_book: PriceBook
    project_id: UUID | None = None


def resource_fields(resource_attrs: dict[str, Any]) -> tuple[str | None, str | None]:
    """(service name, deployment environment) of a resource, from its attributes."""
    return as_text(resource_attrs.get(SERVICE_NAME_KEY)), as_text(first(resource_attrs, ENVIRONMENT_KEYS))


# What extract_llm_fields finds in a span without attributes; read-only. Spares non-LLM spans of the
# native converter (whose attribute dict holds only ROW_ATTRIBUTE_KEYS, so is empty for them) the call.
_NO_LLM_FIELDS = extract_llm_fields({})


def span_row(
    context: RowContext,
    attrs: dict[str, Any],
    ts: datetime,
    end_ts: datetime,
    trace_id: Uuid,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    kind: str,
    duration_ms: float,
    status_code: str,
    status_message: str | None,
    trace_state: str | None,
    attributes_json: str,
    events_json: str | None,
    links_json: str | None,
) -> tuple[Any, ...]:
    """One `llm_traces` row: the span's own columns, and the LLM columns read from `attrs` (cleaned
    attribute values; only ROW_ATTRIBUTE_KEYS are read). Both converters build rows here; the argument
    order after `context` is the order the native decoder returns a span in."""
    llm = extract_llm_fields(attrs) if attrs else _NO_LLM_FIELDS
    provider = llm.provider
    model = llm.model
    input_cost, output_cost, total_cost = llm.input_cost, llm.output_cost, llm.total_cost
    cost_source = None
    if input_cost is not None or output_cost is not None or total_cost is not None:
        cost_source = "span"
        if total_cost is None:
            total_cost = (input_cost or 0) + (output_cost or 0)
    elif model is not None and (llm.input_tokens is not None or llm.output_tokens is not None):
        price = context.price_book.lookup(provider, model, ts.date())
        if price is not None:
            cost = compute_cost(
                price,
                llm.input_tokens,
                llm.output_tokens,
                llm.cache_read_tokens,
                llm.cache_creation_tokens,
            )
            if cost is not None:
                input_cost, output_cost, total_cost = cost.input, cost.output, cost.total
                cost_source = "pricing"
                provider = provider or price.provider
    return (
        ts,
        end_ts,
        trace_id,
        span_id,
        parent_span_id,
        name,
        kind,
        context.service_name,
        context.scope_name,
        context.scope_version,
        provider,
        model,
        llm.request_model,
        llm.response_model,
        llm.operation,
        llm.input_tokens,
        llm.output_tokens,
        llm.total_tokens,
        llm.cache_read_tokens,
        llm.cache_creation_tokens,
        llm.reasoning_tokens,
        input_cost,
        output_cost,
        total_cost,
        cost_source,
        duration_ms,
        status_code,
        status_message,
        llm.user_id,
        llm.session_id,
        as_text(first(attrs, ENVIRONMENT_KEYS)) or context.resource_environment,
        llm.tags,
        llm.finish_reasons,
        trace_state,
        attributes_json,
        context.resource_json,
        events_json,
        links_json,
        context.project_id,
    )


def convert_traces(request: Any, options: ConvertOptions) -> Converted:
    """Every span of the request -> one row tuple, or one rejection with its reason."""
    out = Converted()
    limit = options.max_attribute_bytes
    stats = out.stats
    append = out.rows.append
    budget = options.budget
    window = options.window(SIGNAL)
    received = options.received_unix_nanos
    earliest, latest = window.bounds(received)
    index = 0
    for resource_spans in request.resource_spans:
        resource_attrs = key_values(resource_spans.resource.attributes, limit, stats)
        resource_json = json_text(resource_attrs)
        charge_texts(budget, resource_json)
        service_name, resource_environment = resource_fields(resource_attrs)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            context = RowContext(
                service_name,
                clean_text(scope.name, limit, stats) or None,
                clean_text(scope.version, limit, stats) or None,
                resource_json,
                resource_environment,
                options.price_book,
                options.project_id,
            )
            charge_texts(budget, context.scope_name, context.scope_version)
            for span in scope_spans.spans:
                problem = span_problem(span)
                if problem is not None:
                    out.reject(f"{describe_span(index, span.name, span.trace_id)}: {problem}")
                    index += 1
                    continue
                start_ns = span.start_time_unix_nano
                if not earliest <= start_ns <= latest:
                    out.reject_time(
                        describe_span(index, span.name, span.trace_id), START_TIME, window, start_ns, received
                    )
                    index += 1
                    continue
                index += 1
                attrs = key_values(span.attributes, limit, stats)
                end_ns = span.end_time_unix_nano
                status = span.status
                parent = span.parent_span_id
                kind = span.kind
                name = clean_text(span.name, limit, stats)
                status_message = clean_text(status.message, limit, stats) or None
                trace_state = clean_text(span.trace_state, limit, stats) or None
                attributes_json = json_text(attrs)
                events_json = _events(span, limit, stats)
                links_json = _links(span, limit, stats)
                charge_texts(budget, name, status_message, trace_state, attributes_json, events_json, links_json)
                append(
                    span_row(
                        context,
                        attrs,
                        timestamp_from_unix_nanos(start_ns),
                        timestamp_from_unix_nanos(end_ns),
                        Uuid(span.trace_id),
                        span.span_id.hex(),
                        parent.hex() if parent and parent != _ZERO_SPAN_ID else None,
                        name,
                        SPAN_KINDS[kind] if 0 <= kind < 6 else "unspecified",
                        (end_ns - start_ns) / 1e6,
                        STATUS_CODES[status.code] if 0 <= status.code < 3 else "unset",
                        status_message,
                        trace_state,
                        attributes_json,
                        events_json,
                        links_json,
                    )
                )
    return out

"""Protobuf ExportTraceServiceRequest bytes -> `llm_traces` rows, with the native decoder when built.

Why: going through the protobuf object model costs ~40 µs per GenAI span, most of it in upb field
access. The C extension `receiver.convert._fastotlp` reads the wire format directly and returns, per
span, the row's own columns ready-made (timestamps, ids, cleaned strings, the JSON columns) plus a small
dict of the attributes under `traces.ROW_ATTRIBUTE_KEYS`. Python then builds the row with
`traces.span_row`, the same function the pure converter uses, so the LLM, pricing and cost rules exist
once. `traces.convert_traces` stays the reference: tests/test_native_convert.py compares both paths
column by column, on hand-written edge cases, generated requests and mutated bytes.

Bytes the decoder refuses are exactly those upb refuses (bad wire format, invalid UTF-8 in a string
field, nesting deeper than 100 messages); both paths raise `WireFormatError` for them.

With a budget in the options (receiver.convert.budget), both paths charge it the text they make; the
decoder stops as soon as its text would pass what the budget has left.

The native path is used when the extension imported, it was written for the installed trace schema
(SCHEMA below, checked against the protobuf descriptors at import), and `ConvertOptions.native` is true
(config `convert.native`). Otherwise the request is parsed with upb and converted by convert_traces.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from receiver.convert.attributes import ConversionStats
from receiver.convert.budget import LimitExceeded
from receiver.convert.common import MAX_ERROR_MESSAGES, Converted, ConvertOptions, WireFormatError
from receiver.convert.genai import native_rule_tables
from receiver.convert.pgvalues import Uuid, untrack_rows
from receiver.convert.pricing import PriceBook, compute_cost
from receiver.convert.traces import (
    ROW_ATTRIBUTE_KEYS,
    SIGNAL,
    SPAN_KINDS,
    START_TIME,
    STATUS_CODES,
    RowContext,
    convert_traces,
    describe_span,
    resource_fields,
    span_row,
)

try:
    from receiver.convert import _fastotlp
except ImportError:  # built without a C compiler: the pure path serves
    _fastotlp = None

# The trace schema the C decoder implements: (message, field number) -> (field name, type, repeated).
# Field types are FieldDescriptor.TYPE_* numbers (9 string, 12 bytes, 11 message, 13 uint32, 14 enum,
# 6 fixed64, 7 fixed32, 8 bool, 3 int64, 1 double, 5 int32). If opentelemetry-proto changes any of it,
# the native path turns itself off (and a test fails) until _fastotlp.c is updated.
SCHEMA: dict[tuple[str, int], tuple[str, int, bool]] = {
    ("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest", 1): ("resource_spans", 11, True),
    ("opentelemetry.proto.trace.v1.ResourceSpans", 1): ("resource", 11, False),
    ("opentelemetry.proto.trace.v1.ResourceSpans", 2): ("scope_spans", 11, True),
    ("opentelemetry.proto.trace.v1.ResourceSpans", 3): ("schema_url", 9, False),
    ("opentelemetry.proto.resource.v1.Resource", 1): ("attributes", 11, True),
    ("opentelemetry.proto.resource.v1.Resource", 2): ("dropped_attributes_count", 13, False),
    ("opentelemetry.proto.resource.v1.Resource", 3): ("entity_refs", 11, True),
    ("opentelemetry.proto.common.v1.EntityRef", 1): ("schema_url", 9, False),
    ("opentelemetry.proto.common.v1.EntityRef", 2): ("type", 9, False),
    ("opentelemetry.proto.common.v1.EntityRef", 3): ("id_keys", 9, True),
    ("opentelemetry.proto.common.v1.EntityRef", 4): ("description_keys", 9, True),
    ("opentelemetry.proto.common.v1.KeyValue", 1): ("key", 9, False),
    ("opentelemetry.proto.common.v1.KeyValue", 2): ("value", 11, False),
    ("opentelemetry.proto.common.v1.KeyValue", 3): ("key_strindex", 5, False),
    ("opentelemetry.proto.common.v1.AnyValue", 1): ("string_value", 9, False),
    ("opentelemetry.proto.common.v1.AnyValue", 2): ("bool_value", 8, False),
    ("opentelemetry.proto.common.v1.AnyValue", 3): ("int_value", 3, False),
    ("opentelemetry.proto.common.v1.AnyValue", 4): ("double_value", 1, False),
    ("opentelemetry.proto.common.v1.AnyValue", 5): ("array_value", 11, False),
    ("opentelemetry.proto.common.v1.AnyValue", 6): ("kvlist_value", 11, False),
    ("opentelemetry.proto.common.v1.AnyValue", 7): ("bytes_value", 12, False),
    ("opentelemetry.proto.common.v1.AnyValue", 8): ("string_value_strindex", 5, False),
    ("opentelemetry.proto.common.v1.ArrayValue", 1): ("values", 11, True),
    ("opentelemetry.proto.common.v1.KeyValueList", 1): ("values", 11, True),
    ("opentelemetry.proto.trace.v1.ScopeSpans", 1): ("scope", 11, False),
    ("opentelemetry.proto.trace.v1.ScopeSpans", 2): ("spans", 11, True),
    ("opentelemetry.proto.trace.v1.ScopeSpans", 3): ("schema_url", 9, False),
    ("opentelemetry.proto.common.v1.InstrumentationScope", 1): ("name", 9, False),
    ("opentelemetry.proto.common.v1.InstrumentationScope", 2): ("version", 9, False),
    ("opentelemetry.proto.common.v1.InstrumentationScope", 3): ("attributes", 11, True),
    ("opentelemetry.proto.common.v1.InstrumentationScope", 4): ("dropped_attributes_count", 13, False),
    ("opentelemetry.proto.trace.v1.Span", 1): ("trace_id", 12, False),
    ("opentelemetry.proto.trace.v1.Span", 2): ("span_id", 12, False),
    ("opentelemetry.proto.trace.v1.Span", 3): ("trace_state", 9, False),
    ("opentelemetry.proto.trace.v1.Span", 4): ("parent_span_id", 12, False),
    ("opentelemetry.proto.trace.v1.Span", 5): ("name", 9, False),
    ("opentelemetry.proto.trace.v1.Span", 6): ("kind", 14, False),
    ("opentelemetry.proto.trace.v1.Span", 7): ("start_time_unix_nano", 6, False),
    ("opentelemetry.proto.trace.v1.Span", 8): ("end_time_unix_nano", 6, False),
    ("opentelemetry.proto.trace.v1.Span", 9): ("attributes", 11, True),
    ("opentelemetry.proto.trace.v1.Span", 10): ("dropped_attributes_count", 13, False),
    ("opentelemetry.proto.trace.v1.Span", 11): ("events", 11, True),
    ("opentelemetry.proto.trace.v1.Span", 12): ("dropped_events_count", 13, False),
    ("opentelemetry.proto.trace.v1.Span", 13): ("links", 11, True),
    ("opentelemetry.proto.trace.v1.Span", 14): ("dropped_links_count", 13, False),
    ("opentelemetry.proto.trace.v1.Span", 15): ("status", 11, False),
    ("opentelemetry.proto.trace.v1.Span", 16): ("flags", 7, False),
    ("opentelemetry.proto.trace.v1.Span.Event", 1): ("time_unix_nano", 6, False),
    ("opentelemetry.proto.trace.v1.Span.Event", 2): ("name", 9, False),
    ("opentelemetry.proto.trace.v1.Span.Event", 3): ("attributes", 11, True),
    ("opentelemetry.proto.trace.v1.Span.Event", 4): ("dropped_attributes_count", 13, False),
    ("opentelemetry.proto.trace.v1.Span.Link", 1): ("trace_id", 12, False),
    ("opentelemetry.proto.trace.v1.Span.Link", 2): ("span_id", 12, False),
    ("opentelemetry.proto.trace.v1.Span.Link", 3): ("trace_state", 9, False),
    ("opentelemetry.proto.trace.v1.Span.Link", 4): ("attributes", 11, True),
    ("opentelemetry.proto.trace.v1.Span.Link", 5): ("dropped_attributes_count", 13, False),
    ("opentelemetry.proto.trace.v1.Span.Link", 6): ("flags", 7, False),
    ("opentelemetry.proto.trace.v1.Status", 2): ("message", 9, False),
    ("opentelemetry.proto.trace.v1.Status", 3): ("code", 14, False),
}


def installed_schema() -> dict[tuple[str, int], tuple[str, int, bool]]:
    """The trace schema of the installed opentelemetry-proto, in SCHEMA's form."""
    found: dict[tuple[str, int], tuple[str, int, bool]] = {}
    pending = [ExportTraceServiceRequest.DESCRIPTOR]
    seen: set[str] = set()
    while pending:
        message = pending.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        for field in message.fields:
            found[(message.full_name, field.number)] = (field.name, field.type, field.is_repeated)
            if field.message_type is not None:
                pending.append(field.message_type)
    return found


class _OutputOverBudget(Exception):
    """Raised by the decoder when the text it makes would pass its max_output."""


UNBOUNDED = (1 << 63) - 1


def _make_decoder() -> tuple[Any, str]:
    if _fastotlp is None:
        return None, "the C extension receiver.convert._fastotlp is not built"
    if installed_schema() != SCHEMA:
        return None, "the installed opentelemetry-proto trace schema differs from the one _fastotlp implements"
    decoder = _fastotlp.TraceDecoder(
        keys=tuple(sorted(ROW_ATTRIBUTE_KEYS)),
        uuid_type=Uuid,
        span_kinds=SPAN_KINDS,
        status_codes=STATUS_CODES,
        loads=orjson.loads,
        error=WireFormatError,
        budget_error=_OutputOverBudget,
    )
    return decoder, "native"


# Configuration, fixed after import, and a bounded cache of decoded Resources (touched only with the GIL).
_DECODER, NATIVE_STATUS = _make_decoder()


def _make_rules() -> Any:
    """genai.py's rule tables in the native LlmRules (None without the extension): the LLM columns of the
    common span without Python rule work; the spans it is not certain of take span_row."""
    if _DECODER is None or not hasattr(_fastotlp, "LlmRules"):
        return None
    return _fastotlp.LlmRules(**native_rule_tables())


# Immutable too, but for its bounded cache of provider spellings (a dict only it touches, under the GIL).
_RULES = _make_rules()


def native_rules() -> Any:
    """The native LlmRules the native path builds rows with, or None (tests compare it with genai.py)."""
    return _RULES


def _pricer(book: PriceBook) -> Callable[..., tuple[Any, Any, Any, str | None] | None]:
    """span_row's pricing for LlmRules.span_rows: what a span that used tokens and names a model costs."""
    lookup = book.lookup

    def price(
        provider: str | None,
        model: str,
        ts: datetime,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read: int | None,
        cache_creation: int | None,
        reasoning: int | None,
    ) -> tuple[Any, Any, Any, str | None] | None:
        found = lookup(provider, model, ts)
        if found is None:
            return None
        cost = compute_cost(found, input_tokens, output_tokens, cache_read, cache_creation, reasoning)
        if cost is None:
            return None
        return cost.input, cost.output, cost.total, provider or found.provider

    return price


def native_available() -> bool:
    """True when requests can take the native path (see NATIVE_STATUS for why not)."""
    return _DECODER is not None


def trace_converter(native: bool, native_rules: bool = True) -> str:
    """Which converter trace requests take with `convert.native` = native, and why (for the start-up log)."""
    if not native:
        return "python (convert.native = false)"
    if _DECODER is None:
        return f"python ({NATIVE_STATUS})"
    return "native" if native_rules else "native, GenAI rules in Python (convert.native_rules = false)"


def parse_trace_request(body: bytes) -> Any:
    """Bytes -> ExportTraceServiceRequest with upb (the reference path)."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise WireFormatError(str(exc)) from None
    return request


def convert_traces_bytes(body: bytes, options: ConvertOptions) -> Converted:
    """convert_traces for request bytes: the same rows, rejections, messages and statistics.

    Raises WireFormatError for bytes that are not a valid ExportTraceServiceRequest, and what the
    options' budget raises (LimitExceeded, MemoryBusy)."""
    if _DECODER is None or not options.native:
        return convert_traces(parse_trace_request(body), options)
    budget = options.budget
    max_output = budget.remaining_bytes() if budget is not None else UNBOUNDED
    window = options.window(SIGNAL)
    received = options.received_unix_nanos
    earliest, latest = window.bounds(received)
    try:
        decoded = _DECODER.decode(
            bytes(body),
            options.max_attribute_bytes,
            MAX_ERROR_MESSAGES,
            max_output,
            earliest,
            latest,
            lambda start_ns: window.problem(START_TIME, start_ns, received),
        )
    except _OutputOverBudget:
        assert budget is not None
        budget.charge(nbytes=max_output + 1)  # raises, naming the limit
        raise LimitExceeded("request_memory", "decoded text over the request's memory budget") from None
    resources, rejected, rejections, truncated, nul_replaced, non_finite, output, too_old, too_new = decoded
    if budget is not None:
        budget.charge(nbytes=output)
    out = Converted(stats=ConversionStats(truncated, nul_replaced, non_finite), too_old=too_old, too_new=too_new)
    for index, name, trace_id, problem in rejections:
        out.reject(f"{describe_span(index, name, trace_id)}: {problem}")
    out.rejected = rejected
    book = options.price_book
    project_id = options.project_id
    rows = out.rows
    append = rows.append
    rules = _RULES if options.native_rules else None
    if rules is not None:
        price, plans = _pricing(book)
    for resource_json, resource_attrs, scopes in resources:
        service_name, resource_environment = resource_fields(resource_attrs)
        for scope_name, scope_version, spans in scopes:
            start = len(rows)
            if rules is not None:
                shared = (service_name, scope_name, scope_version, resource_json, resource_environment, project_id)
                rules.span_rows(shared, spans, rows, price, partial(_python_row, shared, book), book.plan, plans)
            else:
                context = RowContext(
                    service_name, scope_name, scope_version, resource_json, resource_environment, book, project_id
                )
                for span in spans:
                    append(span_row(context, *span))
            untrack_rows(rows, start)  # no full GC pass walks these rows again (pgvalues)
    return out


# PriceBook.plan's answers kept per book: (provider, model, yyyymmdd) -> plan. A book is immutable (a reload
# builds a new one), so an answer holds for the book's life; a 1-span request then prices its span with
# one dict lookup instead of plan() and its date arithmetic. Bounded: cleared past MAX_PLANS.
MAX_PLANS = 4096


@lru_cache(maxsize=4)
def _book_pricing(book: PriceBook) -> tuple[Callable[..., Any], dict[tuple[str | None, str, int], Any]]:
    return _pricer(book), {}


def _pricing(book: PriceBook) -> tuple[Callable[..., Any], dict[tuple[str | None, str, int], Any]]:
    """LlmRules.span_rows' price() and plans dict for `book`, made once per book."""
    price, plans = _book_pricing(book)
    if len(plans) > MAX_PLANS:  # models come from the requests: stay bounded whatever they name
        plans.clear()
    return price, plans


def _python_row(shared: tuple[Any, ...], book: PriceBook, span: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row of a span the native rules leave to genai.py (LlmRules.span_rows' fallback); the row
    context is built only here, for the spans that need it."""
    service_name, scope_name, scope_version, resource_json, resource_environment, project_id = shared
    context = RowContext(service_name, scope_name, scope_version, resource_json, resource_environment, book, project_id)
    return span_row(context, *span)

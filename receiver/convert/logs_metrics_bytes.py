"""Protobuf ExportLogsServiceRequest / ExportMetricsServiceRequest bytes -> `llm_logs` / `llm_metrics`
rows, with the native decoder when built.

Why: through upb's object model a log record cost ~28 µs of CPU and a metric point ~26 µs, more than
a span on the native trace path. The C decoder (`_fastotlp.SignalDecoder`, receiver/convert/
_fastotlp_signals.c) reads the wire format directly and makes the rows itself, calling back into Python
only for the GenAI provider/model rules (genai.provider_and_model, on the attributes it reads), to word
a refusal, and to have upb serialize an item whose bytes are not in upb's own serialized form (so that
row identities, receiver.convert.identity, hash the same bytes on both paths).

`logs.convert_logs` and `metrics.convert_metrics` stay the reference: tests/test_native_signals.py
compares both paths row by row and column by column, on generated requests, the same requests
re-encoded with wire-level deviations, and damaged bytes; they are what `convert.native = false` runs.
Bytes the decoder refuses are exactly those upb refuses; both paths raise `WireFormatError` for them.
With a budget in the options (receiver.convert.budget), the decoder stops as soon as the text and lists
it makes would pass what the budget has left, as the trace decoder does.

The native path is used when the extension imported, it was written for the installed schema (SCHEMA
below, checked against the protobuf descriptors at import) and `ConvertOptions.native` is true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from receiver.convert import identity
from receiver.convert.attributes import ConversionStats
from receiver.convert.budget import LimitExceeded
from receiver.convert.common import MAX_ERROR_MESSAGES, Converted, ConvertOptions, WireFormatError
from receiver.convert.envelope import SERVICE_NAME_KEY
from receiver.convert.genai import PROVIDER_MODEL_KEYS, as_text, provider_and_model
from receiver.convert.logs import SIGNAL as LOGS_SIGNAL
from receiver.convert.logs import convert_logs
from receiver.convert.metrics import SIGNAL as METRICS_SIGNAL
from receiver.convert.metrics import TEMPORALITIES, convert_metrics
from receiver.convert.pgvalues import Uuid

try:
    from receiver.convert import _fastotlp
except ImportError:  # built without a C compiler: the pure path serves
    _fastotlp = None

_P = "opentelemetry.proto."

# The schema the C decoder implements: (message, field number) -> (field name, type, repeated, oneof).
# Field types are FieldDescriptor.TYPE_* numbers (1 double, 3 int64, 4 uint64, 5 int32, 6 fixed64,
# 7 fixed32, 8 bool, 9 string, 11 message, 12 bytes, 13 uint32, 14 enum, 16 sfixed64, 17 sint32); the
# oneof is the field's (proto3 `optional` fields have their own, "_name"). If opentelemetry-proto changes
# any of it, the native path turns itself off (and a test fails) until _fastotlp_signals.c is updated.
SCHEMA: dict[tuple[str, int], tuple[str, int, bool, str]] = {
    (_P + "collector.logs.v1.ExportLogsServiceRequest", 1): ("resource_logs", 11, True, ""),
    (_P + "collector.metrics.v1.ExportMetricsServiceRequest", 1): ("resource_metrics", 11, True, ""),
    (_P + "logs.v1.ResourceLogs", 1): ("resource", 11, False, ""),
    (_P + "logs.v1.ResourceLogs", 2): ("scope_logs", 11, True, ""),
    (_P + "logs.v1.ResourceLogs", 3): ("schema_url", 9, False, ""),
    (_P + "metrics.v1.ResourceMetrics", 1): ("resource", 11, False, ""),
    (_P + "metrics.v1.ResourceMetrics", 2): ("scope_metrics", 11, True, ""),
    (_P + "metrics.v1.ResourceMetrics", 3): ("schema_url", 9, False, ""),
    (_P + "resource.v1.Resource", 1): ("attributes", 11, True, ""),
    (_P + "resource.v1.Resource", 2): ("dropped_attributes_count", 13, False, ""),
    (_P + "resource.v1.Resource", 3): ("entity_refs", 11, True, ""),
    (_P + "logs.v1.ScopeLogs", 1): ("scope", 11, False, ""),
    (_P + "logs.v1.ScopeLogs", 2): ("log_records", 11, True, ""),
    (_P + "logs.v1.ScopeLogs", 3): ("schema_url", 9, False, ""),
    (_P + "metrics.v1.ScopeMetrics", 1): ("scope", 11, False, ""),
    (_P + "metrics.v1.ScopeMetrics", 2): ("metrics", 11, True, ""),
    (_P + "metrics.v1.ScopeMetrics", 3): ("schema_url", 9, False, ""),
    (_P + "common.v1.KeyValue", 1): ("key", 9, False, ""),
    (_P + "common.v1.KeyValue", 2): ("value", 11, False, ""),
    (_P + "common.v1.KeyValue", 3): ("key_strindex", 5, False, ""),
    (_P + "common.v1.EntityRef", 1): ("schema_url", 9, False, ""),
    (_P + "common.v1.EntityRef", 2): ("type", 9, False, ""),
    (_P + "common.v1.EntityRef", 3): ("id_keys", 9, True, ""),
    (_P + "common.v1.EntityRef", 4): ("description_keys", 9, True, ""),
    (_P + "common.v1.InstrumentationScope", 1): ("name", 9, False, ""),
    (_P + "common.v1.InstrumentationScope", 2): ("version", 9, False, ""),
    (_P + "common.v1.InstrumentationScope", 3): ("attributes", 11, True, ""),
    (_P + "common.v1.InstrumentationScope", 4): ("dropped_attributes_count", 13, False, ""),
    (_P + "logs.v1.LogRecord", 1): ("time_unix_nano", 6, False, ""),
    (_P + "logs.v1.LogRecord", 2): ("severity_number", 14, False, ""),
    (_P + "logs.v1.LogRecord", 3): ("severity_text", 9, False, ""),
    (_P + "logs.v1.LogRecord", 5): ("body", 11, False, ""),
    (_P + "logs.v1.LogRecord", 6): ("attributes", 11, True, ""),
    (_P + "logs.v1.LogRecord", 7): ("dropped_attributes_count", 13, False, ""),
    (_P + "logs.v1.LogRecord", 8): ("flags", 7, False, ""),
    (_P + "logs.v1.LogRecord", 9): ("trace_id", 12, False, ""),
    (_P + "logs.v1.LogRecord", 10): ("span_id", 12, False, ""),
    (_P + "logs.v1.LogRecord", 11): ("observed_time_unix_nano", 6, False, ""),
    (_P + "logs.v1.LogRecord", 12): ("event_name", 9, False, ""),
    (_P + "metrics.v1.Metric", 1): ("name", 9, False, ""),
    (_P + "metrics.v1.Metric", 2): ("description", 9, False, ""),
    (_P + "metrics.v1.Metric", 3): ("unit", 9, False, ""),
    (_P + "metrics.v1.Metric", 5): ("gauge", 11, False, "data"),
    (_P + "metrics.v1.Metric", 7): ("sum", 11, False, "data"),
    (_P + "metrics.v1.Metric", 9): ("histogram", 11, False, "data"),
    (_P + "metrics.v1.Metric", 10): ("exponential_histogram", 11, False, "data"),
    (_P + "metrics.v1.Metric", 11): ("summary", 11, False, "data"),
    (_P + "metrics.v1.Metric", 12): ("metadata", 11, True, ""),
    (_P + "common.v1.AnyValue", 1): ("string_value", 9, False, "value"),
    (_P + "common.v1.AnyValue", 2): ("bool_value", 8, False, "value"),
    (_P + "common.v1.AnyValue", 3): ("int_value", 3, False, "value"),
    (_P + "common.v1.AnyValue", 4): ("double_value", 1, False, "value"),
    (_P + "common.v1.AnyValue", 5): ("array_value", 11, False, "value"),
    (_P + "common.v1.AnyValue", 6): ("kvlist_value", 11, False, "value"),
    (_P + "common.v1.AnyValue", 7): ("bytes_value", 12, False, "value"),
    (_P + "common.v1.AnyValue", 8): ("string_value_strindex", 5, False, "value"),
    (_P + "metrics.v1.Gauge", 1): ("data_points", 11, True, ""),
    (_P + "metrics.v1.Sum", 1): ("data_points", 11, True, ""),
    (_P + "metrics.v1.Sum", 2): ("aggregation_temporality", 14, False, ""),
    (_P + "metrics.v1.Sum", 3): ("is_monotonic", 8, False, ""),
    (_P + "metrics.v1.Histogram", 1): ("data_points", 11, True, ""),
    (_P + "metrics.v1.Histogram", 2): ("aggregation_temporality", 14, False, ""),
    (_P + "metrics.v1.ExponentialHistogram", 1): ("data_points", 11, True, ""),
    (_P + "metrics.v1.ExponentialHistogram", 2): ("aggregation_temporality", 14, False, ""),
    (_P + "metrics.v1.Summary", 1): ("data_points", 11, True, ""),
    (_P + "common.v1.ArrayValue", 1): ("values", 11, True, ""),
    (_P + "common.v1.KeyValueList", 1): ("values", 11, True, ""),
    (_P + "metrics.v1.NumberDataPoint", 2): ("start_time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.NumberDataPoint", 3): ("time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.NumberDataPoint", 4): ("as_double", 1, False, "value"),
    (_P + "metrics.v1.NumberDataPoint", 5): ("exemplars", 11, True, ""),
    (_P + "metrics.v1.NumberDataPoint", 6): ("as_int", 16, False, "value"),
    (_P + "metrics.v1.NumberDataPoint", 7): ("attributes", 11, True, ""),
    (_P + "metrics.v1.NumberDataPoint", 8): ("flags", 13, False, ""),
    (_P + "metrics.v1.HistogramDataPoint", 2): ("start_time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.HistogramDataPoint", 3): ("time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.HistogramDataPoint", 4): ("count", 6, False, ""),
    (_P + "metrics.v1.HistogramDataPoint", 5): ("sum", 1, False, "_sum"),
    (_P + "metrics.v1.HistogramDataPoint", 6): ("bucket_counts", 6, True, ""),
    (_P + "metrics.v1.HistogramDataPoint", 7): ("explicit_bounds", 1, True, ""),
    (_P + "metrics.v1.HistogramDataPoint", 8): ("exemplars", 11, True, ""),
    (_P + "metrics.v1.HistogramDataPoint", 9): ("attributes", 11, True, ""),
    (_P + "metrics.v1.HistogramDataPoint", 10): ("flags", 13, False, ""),
    (_P + "metrics.v1.HistogramDataPoint", 11): ("min", 1, False, "_min"),
    (_P + "metrics.v1.HistogramDataPoint", 12): ("max", 1, False, "_max"),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 1): ("attributes", 11, True, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 2): ("start_time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 3): ("time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 4): ("count", 6, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 5): ("sum", 1, False, "_sum"),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 6): ("scale", 17, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 7): ("zero_count", 6, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 8): ("positive", 11, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 9): ("negative", 11, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 10): ("flags", 13, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 11): ("exemplars", 11, True, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 12): ("min", 1, False, "_min"),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 13): ("max", 1, False, "_max"),
    (_P + "metrics.v1.ExponentialHistogramDataPoint", 14): ("zero_threshold", 1, False, ""),
    (_P + "metrics.v1.SummaryDataPoint", 2): ("start_time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.SummaryDataPoint", 3): ("time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.SummaryDataPoint", 4): ("count", 6, False, ""),
    (_P + "metrics.v1.SummaryDataPoint", 5): ("sum", 1, False, ""),
    (_P + "metrics.v1.SummaryDataPoint", 6): ("quantile_values", 11, True, ""),
    (_P + "metrics.v1.SummaryDataPoint", 7): ("attributes", 11, True, ""),
    (_P + "metrics.v1.SummaryDataPoint", 8): ("flags", 13, False, ""),
    (_P + "metrics.v1.Exemplar", 2): ("time_unix_nano", 6, False, ""),
    (_P + "metrics.v1.Exemplar", 3): ("as_double", 1, False, "value"),
    (_P + "metrics.v1.Exemplar", 4): ("span_id", 12, False, ""),
    (_P + "metrics.v1.Exemplar", 5): ("trace_id", 12, False, ""),
    (_P + "metrics.v1.Exemplar", 6): ("as_int", 16, False, "value"),
    (_P + "metrics.v1.Exemplar", 7): ("filtered_attributes", 11, True, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint.Buckets", 1): ("offset", 17, False, ""),
    (_P + "metrics.v1.ExponentialHistogramDataPoint.Buckets", 2): ("bucket_counts", 4, True, ""),
    (_P + "metrics.v1.SummaryDataPoint.ValueAtQuantile", 1): ("quantile", 1, False, ""),
    (_P + "metrics.v1.SummaryDataPoint.ValueAtQuantile", 2): ("value", 1, False, ""),
}

# The messages whose serialization a row identity hashes, in the order of ROOT_* in _fastotlp_signals.c.
ROOTS: tuple[type[Message], ...] = (
    Resource,
    InstrumentationScope,
    LogRecord,
    NumberDataPoint,
    HistogramDataPoint,
    ExponentialHistogramDataPoint,
    SummaryDataPoint,
)

# How the canonical-form check reads a field (CK_* and CF_* in _fastotlp_signals.c).
CK_I64, CK_I32, CK_VARINT, CK_INT32, CK_UINT32, CK_BOOL, CK_LEN, CK_MESSAGE = range(1, 9)
CF_REPEATED, CF_PACKED, CF_PRESENCE = 1, 2, 4
_F = FieldDescriptor
_CANON_KINDS = {
    _F.TYPE_DOUBLE: CK_I64,
    _F.TYPE_FIXED64: CK_I64,
    _F.TYPE_SFIXED64: CK_I64,
    _F.TYPE_FLOAT: CK_I32,
    _F.TYPE_FIXED32: CK_I32,
    _F.TYPE_SFIXED32: CK_I32,
    _F.TYPE_INT64: CK_VARINT,
    _F.TYPE_UINT64: CK_VARINT,
    _F.TYPE_SINT64: CK_VARINT,  # zigzag is a bijection on 64 bits: any minimal varint
    _F.TYPE_INT32: CK_INT32,
    _F.TYPE_ENUM: CK_INT32,
    _F.TYPE_UINT32: CK_UINT32,
    _F.TYPE_SINT32: CK_UINT32,  # ... and on 32 bits
    _F.TYPE_BOOL: CK_BOOL,
    _F.TYPE_STRING: CK_LEN,
    _F.TYPE_BYTES: CK_LEN,
    _F.TYPE_MESSAGE: CK_MESSAGE,
}

CanonTable = tuple[tuple[tuple[int, int, int, int, int], ...], ...]


def canon_table(roots: tuple[Descriptor, ...]) -> tuple[CanonTable, tuple[int, ...]]:
    """The schema of `roots` and every message under them, as the canonical-form check reads it: per
    type, (field number, kind, flags, child type index or -1, oneof index or -1); and the roots' indices."""
    index: dict[str, int] = {}
    descriptors: list[Descriptor] = []

    def type_index(message: Descriptor) -> int:
        if message.full_name not in index:
            index[message.full_name] = len(descriptors)
            descriptors.append(message)
        return index[message.full_name]

    root_indices = tuple(type_index(root) for root in roots)
    types: list[tuple[tuple[int, int, int, int, int], ...]] = []
    position = 0
    while position < len(descriptors):
        message = descriptors[position]
        position += 1
        oneofs = {oneof.full_name: i for i, oneof in enumerate(message.oneofs)}
        fields = []
        for f in message.fields:
            flags = (CF_REPEATED if f.is_repeated else 0) | (CF_PACKED if f.is_packed else 0)
            flags |= CF_PRESENCE if f.has_presence else 0
            child = type_index(f.message_type) if f.message_type is not None else -1
            oneof = oneofs[f.containing_oneof.full_name] if f.containing_oneof is not None else -1
            fields.append((f.number, _CANON_KINDS[f.type], flags, child, oneof))
        types.append(tuple(fields))
    return tuple(types), root_indices


def installed_schema() -> dict[tuple[str, int], tuple[str, int, bool, str]]:
    """The logs and metrics schema of the installed opentelemetry-proto, in SCHEMA's form."""
    found: dict[tuple[str, int], tuple[str, int, bool, str]] = {}
    pending = [ExportLogsServiceRequest.DESCRIPTOR, ExportMetricsServiceRequest.DESCRIPTOR]
    seen: set[str] = set()
    while pending:
        message = pending.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        for f in message.fields:
            oneof = f.containing_oneof.name if f.containing_oneof is not None else ""
            found[(message.full_name, f.number)] = (f.name, f.type, f.is_repeated, oneof)
            if f.message_type is not None:
                pending.append(f.message_type)
    return found


def serialize(root: int, data: bytes) -> bytes:
    """What upb's serializer writes for the message of type ROOTS[root] that `data` holds (what
    identity.item_id hashes): for items whose own bytes are in another form."""
    return ROOTS[root].FromString(data).SerializeToString(deterministic=True)


class _OutputOverBudget(Exception):
    """Raised by the decoder when the text it makes would pass its max_output."""


UNBOUNDED = (1 << 63) - 1
DECODER_KEYS = tuple(sorted({*PROVIDER_MODEL_KEYS, SERVICE_NAME_KEY, "event.name"}))


def _make_decoder() -> tuple[Any, str]:
    if _fastotlp is None or not hasattr(_fastotlp, "SignalDecoder"):
        return None, "the C extension receiver.convert._fastotlp is not built"
    if installed_schema() != SCHEMA:
        return None, "the installed opentelemetry-proto logs/metrics schema differs from the one _fastotlp implements"
    canon, roots = canon_table(tuple(root.DESCRIPTOR for root in ROOTS))
    decoder = _fastotlp.SignalDecoder(
        keys=DECODER_KEYS,
        uuid_type=Uuid,
        loads=orjson.loads,
        error=WireFormatError,
        budget_error=_OutputOverBudget,
        provider_and_model=provider_and_model,
        as_text=as_text,
        serialize=serialize,
        temporalities=TEMPORALITIES,
        canon=canon,
        roots=roots,
        domains=(identity.LOGS_DOMAIN, identity.METRICS_DOMAIN),
    )
    return decoder, "native"


# Immutable after import, like a compiled pattern: the decoder holds only configuration.
_DECODER, NATIVE_STATUS = _make_decoder()


def native_available() -> bool:
    """True when log and metric requests can take the native path (see NATIVE_STATUS for why not)."""
    return _DECODER is not None


def logs_metrics_converter(native: bool) -> str:
    """Which converter log and metric requests take with `convert.native` = native, and why (start-up log)."""
    if not native:
        return "python (convert.native = false)"
    return "native" if _DECODER is not None else f"python ({NATIVE_STATUS})"


def parse_request(message_type: type[Message], body: bytes) -> Any:
    """Bytes -> request message with upb (the reference path)."""
    request = message_type()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise WireFormatError(str(exc)) from None
    return request


def _decode(decode: Callable[..., Any], signal: str, body: bytes, options: ConvertOptions) -> Converted:
    budget = options.budget
    max_output = budget.remaining_bytes() if budget is not None else UNBOUNDED
    window = options.window(signal)
    received = options.received_unix_nanos
    earliest, latest = window.bounds(received)
    project = options.project_id
    try:
        decoded = decode(
            bytes(body),
            options.max_attribute_bytes,
            MAX_ERROR_MESSAGES,
            max_output,
            earliest,
            latest,
            max(0, received),
            lambda what, time_ns: window.problem(what, time_ns, received),
            project,
            project.bytes if project is not None else None,
        )
    except _OutputOverBudget:
        assert budget is not None
        budget.charge(nbytes=max_output + 1)  # raises, naming the limit
        raise LimitExceeded("request_memory", "decoded text over the request's memory budget") from None
    rows, rejected, errors, truncated, nul_replaced, non_finite, output, too_old, too_new, _reserialized = decoded
    if budget is not None:
        budget.charge(nbytes=output)
    return Converted(
        rows=rows,
        rejected=rejected,
        too_old=too_old,
        too_new=too_new,
        errors=errors,
        stats=ConversionStats(truncated, nul_replaced, non_finite),
    )


def convert_logs_bytes(body: bytes, options: ConvertOptions) -> Converted:
    """convert_logs for request bytes: the same rows, rejections, messages and statistics.

    Raises WireFormatError for bytes that are not a valid ExportLogsServiceRequest, and what the
    options' budget raises (LimitExceeded, MemoryBusy)."""
    if _DECODER is None or not options.native:
        return convert_logs(parse_request(ExportLogsServiceRequest, body), options)
    return _decode(_DECODER.decode_logs, LOGS_SIGNAL, body, options)


def convert_metrics_bytes(body: bytes, options: ConvertOptions) -> Converted:
    """convert_metrics for request bytes (see convert_logs_bytes)."""
    if _DECODER is None or not options.native:
        return convert_metrics(parse_request(ExportMetricsServiceRequest, body), options)
    return _decode(_DECODER.decode_metrics, METRICS_SIGNAL, body, options)

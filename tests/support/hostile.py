"""Request bodies that cost far more to decode than they weigh: the amplification shapes of issue 9.

Each shape fills about `size` bytes with one kind of cheap-to-send structure: millions of empty
containers (resources, scopes, events, links, attributes, data points, log records), values nested as
deep as protobuf allows, JSON objects, or simply valid spans. The tests send them to a real receiver,
the fuzz targets start from them, and `python -m benchmarks.amplification` measures what each costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.wire import (
    any_string,
    field_fixed64,
    field_len,
    key_value,
    request,
    resource_spans,
    scope_spans,
    span_fields,
)


@dataclass(frozen=True)
class Shape:
    name: str
    signal: str  # traces, metrics, logs
    json: bool
    build: Callable[[int], bytes]  # size in bytes -> body
    what: str


# Items are dated a minute before the module is loaded: inside the receiver's accepted time window
# (retention .. max_future_skew), so what these shapes cost is decoding, not a refusal for their age.
NOW = time.time_ns() - 60 * 10**9


def _repeat(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def empty_resources(size: int) -> bytes:
    return _repeat(b"\x0a\x00", size)  # ExportTraceServiceRequest.resource_spans = {}


def empty_scopes(size: int) -> bytes:
    return field_len(1, _repeat(b"\x12\x00", size - 8))  # one ResourceSpans of empty ScopeSpans


def empty_spans(size: int) -> bytes:
    return field_len(1, field_len(2, _repeat(b"\x12\x00", size - 16)))  # empty Spans: items, all invalid


def _one_span(extra: bytes) -> bytes:
    return request(resource_spans(scope_spans(span_fields(b"hostile", start=NOW, end=NOW + 1_500_000) + extra)))


def empty_events(size: int) -> bytes:
    return _one_span(_repeat(b"\x5a\x00", size - 80))  # Span.events = {}


def empty_links(size: int) -> bytes:
    return _one_span(_repeat(b"\x6a\x00", size - 80))  # Span.links = {}


def empty_attributes(size: int) -> bytes:
    return _one_span(_repeat(b"\x4a\x00", size - 80))  # Span.attributes = KeyValue{}


def empty_array_values(size: int) -> bytes:
    """One attribute whose array holds millions of empty AnyValues (JSON `null` each)."""
    array = _repeat(b"\x0a\x00", size - 100)
    value = field_len(5, array)
    return _one_span(field_len(9, key_value(b"k", value)))


def nested_value(levels: int) -> bytes:
    """An AnyValue holding arrays nested `levels` deep (two messages per level)."""
    value = any_string(b"x")
    for _ in range(levels):
        value = field_len(5, field_len(1, value))
    return value


def deep_nesting(size: int) -> bytes:
    """Attributes whose values nest as deep as upb allows (100 messages), repeated to fill the body."""
    # Request 0 > ResourceSpans 1 > ScopeSpans 2 > Span 3 > KeyValue 4 > AnyValue 5: 47 array levels
    # (ArrayValue + AnyValue each) reach depth 99.
    attribute = field_len(9, key_value(b"deep", nested_value(47)))
    return _one_span(_repeat(attribute, size - 80))


def _loadgen_pool(encoding: str):  # type: ignore[no-untyped-def]
    from llm_observatory_loadgen.bodies import build_pool
    from llm_observatory_loadgen.ids import RunId
    from llm_observatory_loadgen.workload import WorkloadSpec

    return build_pool(WorkloadSpec(batch_spans=512), RunId.new(), encoding, 8, 1)


def valid_spans(size: int) -> bytes:
    """loadgen's workload (GenAI spans, ~1.5 KB each): its requests, every span unique (rendered as
    loadgen sends them), concatenated (protobuf merges them)."""
    pool = _loadgen_pool("protobuf")
    copies = max(1, size // pool.body_bytes)
    return b"".join(pool.entries[k % len(pool.entries)].traces.render(k + 1) for k in range(copies))


def valid_span_count(size: int) -> int:
    """How many spans valid_spans(size) holds."""
    pool = _loadgen_pool("protobuf")
    return max(1, size // pool.body_bytes) * pool.spans_per_request


def minimal_spans(size: int) -> bytes:
    """Valid spans with nothing but ids and times (~50 bytes each): the most rows per byte."""
    spans = b"".join(
        field_len(
            2,
            span_fields(
                b"",
                trace_id=(i + 1).to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                start=NOW,
                end=NOW + 1_500_000,
            ),
        )
        for i in range(max(1, size // 52))
    )
    return field_len(1, field_len(2, spans))


def _metric_request(metric: bytes) -> bytes:
    scope_metrics = field_len(2, metric)  # ScopeMetrics.metrics
    return field_len(1, field_len(2, scope_metrics))  # resource_metrics > scope_metrics


def empty_points(size: int) -> bytes:
    gauge = field_len(5, _repeat(b"\x0a\x00", size - 32))  # Gauge.data_points = {}
    return _metric_request(field_len(1, b"m") + gauge)


def minimal_points(size: int) -> bytes:
    """Gauge points with a time and a value (~22 bytes each)."""
    point = field_fixed64(3, NOW) + field_fixed64(4, 1)  # time_unix_nano, as_double
    gauge = field_len(5, _repeat(field_len(1, point), size - 32))
    return _metric_request(field_len(1, b"m") + gauge)


def empty_metrics(size: int) -> bytes:
    return field_len(1, field_len(2, _repeat(b"\x12\x00", size - 16)))  # ScopeMetrics.metrics = {}


def empty_records(size: int) -> bytes:
    return field_len(1, field_len(2, _repeat(b"\x12\x00", size - 16)))  # ScopeLogs.log_records = {}


def minimal_records(size: int) -> bytes:
    """Log records with only a time (~11 bytes each)."""
    record = field_len(2, field_fixed64(1, NOW))
    return field_len(1, field_len(2, _repeat(record, size - 16)))


def _json_request(resource_list: str, inner: bytes, size: int) -> bytes:
    head = b'{"' + resource_list.encode() + b'":['
    return head + _repeat(inner, size - len(head) - 2).rstrip(b",") + b"]}"


def json_empty_resources(size: int) -> bytes:
    return _json_request("resourceSpans", b"{},", size)


def json_empty_events(size: int) -> bytes:
    span = (
        b'{"traceId":"01010101010101010101010101010101","spanId":"0202020202020202","name":"hostile",'
        b'"startTimeUnixNano":"%d","endTimeUnixNano":"%d","events":[' % (NOW, NOW + 1_500_000)
    )
    events = _repeat(b"{},", size - len(span) - 80).rstrip(b",")
    return b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + span + events + b"]}]}]}]}"


def json_deep_nesting(size: int) -> bytes:
    """Arrays nested 1000 deep (orjson's own limit is 1024) in an unknown field, repeated."""
    unit = b"[" * 1000 + b"]" * 1000 + b","
    return b'{"resourceSpans":[],"x":[' + _repeat(unit, size - 40).rstrip(b",") + b"]}"


def json_valid_spans(size: int) -> bytes:
    """valid_spans as OTLP/JSON: the resource entries of loadgen's JSON requests in one document."""
    import orjson

    pool = _loadgen_pool("json")
    copies = max(1, size // pool.body_bytes)
    resources = []
    for k in range(copies):
        resources += orjson.loads(pool.entries[k % len(pool.entries)].traces.render(k + 1))["resourceSpans"]
    return orjson.dumps({"resourceSpans": resources})


SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        Shape("empty_resources", "traces", False, empty_resources, "`0a 00` repeated: empty ResourceSpans"),
        Shape("empty_scopes", "traces", False, empty_scopes, "one resource of empty ScopeSpans"),
        Shape("empty_spans", "traces", False, empty_spans, "empty Spans (items, each invalid)"),
        Shape("empty_events", "traces", False, empty_events, "one span with empty events"),
        Shape("empty_links", "traces", False, empty_links, "one span with empty links"),
        Shape("empty_attributes", "traces", False, empty_attributes, "one span with empty KeyValues"),
        Shape("empty_array_values", "traces", False, empty_array_values, "one array of empty AnyValues"),
        Shape("deep_nesting", "traces", False, deep_nesting, "attributes nested 100 messages deep"),
        Shape("valid_spans", "traces", False, valid_spans, "loadgen's GenAI spans"),
        Shape("minimal_spans", "traces", False, minimal_spans, "valid spans of ids and times only"),
        Shape("empty_points", "metrics", False, empty_points, "one gauge of empty data points"),
        Shape("minimal_points", "metrics", False, minimal_points, "gauge points of a time and a value"),
        Shape("empty_metrics", "metrics", False, empty_metrics, "empty Metrics"),
        Shape("empty_records", "logs", False, empty_records, "empty log records"),
        Shape("minimal_records", "logs", False, minimal_records, "log records of a time only"),
        Shape("json_empty_resources", "traces", True, json_empty_resources, "OTLP/JSON: `{},` repeated"),
        Shape("json_empty_events", "traces", True, json_empty_events, "OTLP/JSON: one span, `{},` events"),
        Shape("json_deep_nesting", "traces", True, json_deep_nesting, "OTLP/JSON: arrays 1000 deep"),
        Shape("json_valid_spans", "traces", True, json_valid_spans, "OTLP/JSON: loadgen's spans"),
    )
}

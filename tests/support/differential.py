"""The native converters against the reference: the comparison every differential test and fuzz target
makes (tests/test_native_convert.py, tests/test_native_signals.py, tests/fuzz).

The reference is upb's parse followed by `convert_traces`; the native path is `convert_traces_bytes`
with the C decoder. For every request both must agree: the same rows (every column, same types),
rejections, messages and statistics, or both refuse the bytes. JSON columns are compared as parsed
values (floats exactly) and as jsonb compares them (key order, numbers by value); their texts may
differ only in how a number is spelled (Python's repr vs orjson, e.g. 1e-05 vs 0.00001). The wire
scanners that run before any decoder (receiver.convert.scan) must agree with each other, never refuse
bytes upb accepts, and count every span upb finds.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from receiver import schema
from receiver.convert.common import Converted, ConvertOptions, WireFormatError
from receiver.convert.logs import convert_logs
from receiver.convert.logs_metrics_bytes import convert_logs_bytes, convert_metrics_bytes
from receiver.convert.metrics import convert_metrics
from receiver.convert.pricing import ModelPrice, PriceBook
from receiver.convert.scan import RequestScanner, WireCounts
from receiver.convert.traces import convert_traces
from receiver.convert.traces_bytes import convert_traces_bytes

BOOK = PriceBook(
    [
        ModelPrice("openai", "gpt-4o", Decimal("2.50"), Decimal("10"), Decimal("1.25")),
        ModelPrice("openai", "gpt-4o-mini", Decimal("0.15"), Decimal("0.60")),
        ModelPrice("anthropic", "claude-3-5-sonnet", Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75")),
        ModelPrice("openai", "o1", Decimal("15"), Decimal("60"), effective_date=date(2024, 1, 1)),
    ]
)
OPTIONS = ConvertOptions(price_book=BOOK)
JSON_COLUMNS = frozenset({"attributes", "resource_attributes", "events", "links"})
SCANNER = RequestScanner(ExportTraceServiceRequest.DESCRIPTOR)
PURE_SCANNER = RequestScanner(ExportTraceServiceRequest.DESCRIPTOR, native=False)
SPAN = "opentelemetry.proto.trace.v1.Span"


def scanned(body: bytes) -> WireCounts | None:
    """What the scanners make of `body` (None: refused); the C scanner and its pure twin must agree."""
    outcomes = []
    for scanner in (SCANNER, PURE_SCANNER):
        try:
            outcomes.append(scanner.scan(body))
        except WireFormatError as exc:
            assert " at byte " in str(exc)
            outcomes.append(None)
    assert outcomes[0] == outcomes[1], f"C scanner {outcomes[0]} != pure scanner {outcomes[1]}: {body[:200]!r}"
    return outcomes[0]


def reference(body: bytes, options: ConvertOptions) -> Converted | None:
    try:
        parsed = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RuntimeError, ValueError):
        return None
    return convert_traces(parsed, options)


def native(body: bytes, options: ConvertOptions) -> Converted | None:
    try:
        return convert_traces_bytes(body, dataclasses.replace(options, native=True))
    except WireFormatError as exc:
        assert " at byte " in str(exc)  # says what and where
        return None


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"JSON constant {name} is not JSON (jsonb refuses it)")


def ordered_json(text: str) -> Any:
    """JSON as jsonb reads it: numbers by value (Decimal), keys in order, nothing but real JSON."""
    return json.loads(
        text, object_pairs_hook=list, parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse_constant
    )


def assert_same_json(actual: str, expected: str, where: str) -> None:
    if actual == expected:
        return
    assert orjson.loads(actual) == orjson.loads(expected), where
    assert ordered_json(actual) == ordered_json(expected), where


def assert_same(body: bytes, options: ConvertOptions = OPTIONS) -> Converted | None:
    """Both paths agree on `body`; returns the native result (None: both refused the bytes). The
    scanners never refuse what upb accepts, and count every span of it."""
    expected = reference(body, options)
    actual = native(body, options)
    counts = scanned(body)
    if expected is not None:
        assert counts is not None, f"the scanners refuse bytes upb accepts: {body[:200]!r}"
        assert counts.messages.get(SPAN, 0) == len(expected.rows) + expected.rejected
    if expected is None or actual is None:
        assert expected is None and actual is None, (
            f"upb {'refused' if expected is None else 'accepted'} the bytes, "
            f"native {'refused' if actual is None else 'accepted'} them: {body[:200]!r}"
        )
        return None
    assert_same_converted(actual, expected)
    return actual


def assert_same_converted(
    actual: Converted,
    expected: Converted,
    columns: tuple[str, ...] = schema.TRACES_COLUMNS,
    json_columns: frozenset[str] = JSON_COLUMNS,
) -> None:
    """The same rows (every column, same types), rejections, messages and statistics."""
    assert (actual.rejected, actual.too_old, actual.too_new, actual.errors) == (
        expected.rejected,
        expected.too_old,
        expected.too_new,
        expected.errors,
    )
    assert actual.stats == expected.stats
    assert len(actual.rows) == len(expected.rows)
    for index, (got, want) in enumerate(zip(actual.rows, expected.rows, strict=True)):
        for column, x, y in zip(columns, got, want, strict=True):
            where = f"row {index} column {column}"
            json_text = column in json_columns and isinstance(x, str) and isinstance(y, str)
            if column == "body" and got[columns.index("body_json")] is None:
                json_text = False  # a string body, stored as sent
            if json_text:
                assert "\\u0000" not in x, where
                assert_same_json(x, y, where)
            else:
                assert type(x) is type(y), f"{where}: {type(x)} != {type(y)}"
                assert repr(x) == repr(y), f"{where}: {x!r} != {y!r}"


# -- logs and metrics: the native decoder (logs_metrics_bytes) against logs.py / metrics.py ---------

SIGNAL_COLUMNS = {"logs": schema.LOGS_COLUMNS, "metrics": schema.METRICS_COLUMNS}
# Columns holding JSON text; a log body holds it only when body_json does (else a plain string).
SIGNAL_JSON_COLUMNS = {
    "logs": frozenset({"body", "body_json", "attributes", "resource_attributes"}),
    "metrics": frozenset({"exemplars", "attributes", "resource_attributes"}),
}


def signal_reference(signal: str, body: bytes, options: ConvertOptions) -> Converted | None:
    """upb's parse, then logs.convert_logs / metrics.convert_metrics."""
    request_type, convert = (
        (ExportLogsServiceRequest, convert_logs) if signal == "logs" else (ExportMetricsServiceRequest, convert_metrics)
    )
    try:
        parsed = request_type.FromString(body)
    except (DecodeError, RuntimeError, ValueError):
        return None
    return convert(parsed, options)


def signal_native(signal: str, body: bytes, options: ConvertOptions) -> Converted | None:
    convert = convert_logs_bytes if signal == "logs" else convert_metrics_bytes
    try:
        return convert(body, dataclasses.replace(options, native=True))
    except WireFormatError as exc:
        assert " at byte " in str(exc)  # says what and where
        return None


def assert_same_signal(signal: str, body: bytes, options: ConvertOptions = OPTIONS) -> Converted | None:
    """Both paths agree on a logs or metrics request; returns the native result (None: both refused
    the bytes)."""
    expected = signal_reference(signal, body, options)
    actual = signal_native(signal, body, options)
    if expected is None or actual is None:
        assert expected is None and actual is None, (
            f"upb {'refused' if expected is None else 'accepted'} the bytes, "
            f"native {'refused' if actual is None else 'accepted'} them: {body[:200]!r}"
        )
        return None
    assert_same_converted(actual, expected, SIGNAL_COLUMNS[signal], SIGNAL_JSON_COLUMNS[signal])
    return actual
